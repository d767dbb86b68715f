"""The server under test: `patient-search serve` as a subprocess, and what is sampled from it.

A `Server` is started with the settings of one benchmark configuration (cache on or off, pool
size, acquire timeout) through the environment, exactly as an operator would, and waited for
until `/readyz` answers 200. While a load runs, a `Sampler` thread reads `/metrics` and each
worker's RSS (psutil) once a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from patient_search.auth.tokens import issue_token
from patient_search.settings import Settings

REPO = Path(__file__).resolve().parents[1]
LOG_DIR = REPO / ".data" / "bench" / "logs"
READY_TIMEOUT_S = 60.0
# The process model under test (`BENCH_WORKERS`): one worker per core by default.
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
# One token per simulated person (the search rate limit is per user): more than any run uses.
TOKENS = 256
# The per-user search limit stays on (its Redis round trip is part of every search) but above
# what a closed-loop client sends; paced users never come near the production default either.
SEARCH_RATE_PER_MINUTE = 1_000_000
SEARCH_RATE_BURST = 100_000


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One way of running the service; every field maps to a PATIENT_SEARCH_ variable."""

    label: str
    cache_enabled: bool = True
    pool_max: int | None = None
    acquire_timeout_s: float | None = None
    workers: int = WORKERS
    # Further PATIENT_SEARCH_ variables, applied last (e.g. the rate limit a study needs).
    extra: tuple[tuple[str, str], ...] = ()

    def environment(self, database_url: str, redis_url: str, secret: str) -> dict[str, str]:
        env = {
            "PATIENT_SEARCH_DATABASE_URL": database_url,
            "PATIENT_SEARCH_REDIS_URL": redis_url,
            "PATIENT_SEARCH_JWT_SECRET": secret,
            "PATIENT_SEARCH_ENV": "dev",
            "PATIENT_SEARCH_CACHE_ENABLED": "true" if self.cache_enabled else "false",
            # The benchmark reads metrics on the API port (GET /metrics).
            "PATIENT_SEARCH_METRICS_ENABLED": "true",
            "PATIENT_SEARCH_METRICS_PORT": "0",
            "PATIENT_SEARCH_SEARCH_RATE_PER_MINUTE": str(SEARCH_RATE_PER_MINUTE),
            "PATIENT_SEARCH_SEARCH_RATE_BURST": str(SEARCH_RATE_BURST),
        }
        if self.pool_max is not None:
            env["PATIENT_SEARCH_DB_POOL_MAX"] = str(self.pool_max)
            env["PATIENT_SEARCH_DB_POOL_MIN"] = str(min(self.pool_max, 5))
        if self.acquire_timeout_s is not None:
            env["PATIENT_SEARCH_DB_POOL_ACQUIRE_TIMEOUT_S"] = str(self.acquire_timeout_s)
        return {**env, **dict(self.extra)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A running `patient-search serve`; use as a context manager."""

    def __init__(self, config: ServerConfig, database_url: str, clinic_id: str) -> None:
        self.database_url = database_url
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        secret = self.secret = secrets.token_urlsafe(48)
        self.redis_url = Settings().redis_url
        self._env = {**os.environ, **config.environment(database_url, self.redis_url, secret)}
        # `serve` makes a fresh metrics directory per server only when none is inherited.
        self._env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        tokens = [
            issue_token(
                secret,
                clinic_id=clinic_id,
                user_id=f"bench-desk-{i}",
                scopes="patients:read patients:write",
                ttl_s=24 * 3600,
            )
            for i in range(TOKENS)
        ]
        self.log_path = LOG_DIR / f"server-{config.label}.log"
        self.tokens_path = LOG_DIR / f"tokens-{config.label}.json"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.tokens_path.write_text(json.dumps(tokens), encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> None:
        """Launch the process; `wait_ready` waits for it (several servers can start at once)."""
        log = self.log_path.open("wb")
        command = [
            str(REPO / ".venv" / "bin" / "patient-search"),
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.config.workers),
        ]
        self._process = subprocess.Popen(
            command, env=self._env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"the server exited ({self._process.returncode}): {self._tail()}"
                )
            if b"Application startup failed" in self.log_path.read_bytes():
                raise RuntimeError(f"the server's workers failed to start: {self._tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    # Every worker must be up, not just the first to answer.
                    if len(self.worker_pids()) >= self.config.workers:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {READY_TIMEOUT_S:.0f} s")

    def _tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) + f"\n(log: {self.log_path})"

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (not the supervisor, not multiprocessing's helpers)."""
        if self._process is None:
            return []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self._process.pid).children()
            return [c.pid for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        return []

    def metrics_text(self, timeout: float = 2.0) -> str:
        """GET /metrics; empty when it is not served."""
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(self.url + "/metrics", timeout=timeout)
            if response.status_code == 200:
                return response.text
        return ""

    def rss_by_worker(self) -> dict[int, int]:
        rss: dict[int, int] = {}
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.Error):
                rss[pid] = psutil.Process(pid).memory_info().rss
        return rss


@contextlib.contextmanager
def running(database_url: str, clinic_id: str, *configs: ServerConfig) -> Iterator[list[Server]]:
    """Several servers started side by side (their start-up overlaps), stopped at the end."""
    servers = [Server(config, database_url, clinic_id) for config in configs]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@dataclass(slots=True)
class Tick:
    """One moment of a run as the server saw it (`extra`: what the caller sampled too)."""

    t: float
    metrics: str
    rss: dict[int, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


class Sampler:
    """Reads /metrics and worker RSS every `interval_s` in a thread, for the length of a `with`."""

    def __init__(
        self,
        server: Server,
        interval_s: float = 1.0,
        extra: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self._server = server
        self._interval_s = interval_s
        self._extra = extra
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ticks: list[Tick] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            self.ticks.append(self.tick())
            self._stop.wait(max(0.0, self._interval_s - (time.time() - started)))

    def tick(self) -> Tick:
        """Sample once, now."""
        extra = self._extra() if self._extra is not None else {}
        return Tick(time.time(), self._server.metrics_text(), self._server.rss_by_worker(), extra)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        # The closing tick: counters as they stand once the load has stopped.
        self.ticks.append(self.tick())
