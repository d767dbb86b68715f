"""The real server with two workers: one scrape reports the sum of both."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.factories import TEST_SECRET, bearer, new_clinic_id
from tests.observability.helpers import free_port, scraped

HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}
LOOKUP = {"method": "GET", "route": "/v1/patients/{patient_id}", "status": "404"}
COUNT = "patient_search_http_request_duration_seconds_count"
CLI = Path(sys.executable).parent / "patient-search"


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, metrics_dir: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_dir = metrics_dir


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(**settings: str) -> Server:
        port = free_port()
        metrics_dir = tmp_path / "metrics"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENT_SEARCH_")}
        env |= {
            "PATIENT_SEARCH_DATABASE_URL": database_url,
            "PATIENT_SEARCH_ENV": "dev",
            "PATIENT_SEARCH_JWT_SECRET": TEST_SECRET,
            "PATIENT_SEARCH_REDIS_URL": "",
            "PATIENT_SEARCH_DB_POOL_MIN": "1",
            "PATIENT_SEARCH_DB_POOL_MAX": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        env |= {f"PATIENT_SEARCH_{key.upper()}": value for key, value in settings.items()}
        with (tmp_path / f"server-{port}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(CLI), "serve", "--workers", "2", "--port", str(port)],
                cwd=tmp_path,  # no .env there: only the variables above apply
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(process, port, metrics_dir)
        started.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"server-{port}.log").read_text()
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not start")

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def per_worker(metrics_dir: Path, name: str, labels: dict[str, str]) -> dict[int, float]:
    """One sample's value in each worker's own files."""
    values: dict[int, float] = {}
    for path in glob.glob(str(metrics_dir / "histogram_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for family in MultiProcessCollector.merge([path], accumulate=True):  # type: ignore[no-untyped-call]
            for item in family.samples:
                if item.name == name and item.labels == labels:
                    values[pid] = item.value
    return values


async def _reach_both_workers(server: Server) -> dict[int, float]:
    # Fresh connections (no keep-alive), several at a time: the kernel spreads the accepts.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, limits=limits) as client:
        for _ in range(50):
            await asyncio.gather(*(client.get("/healthz") for _ in range(8)))
            served = per_worker(server.metrics_dir, COUNT, HEALTHZ)
            if len([v for v in served.values() if v > 0]) >= 2:
                return served
    raise AssertionError(f"the requests never reached both workers: {served}")


async def test_one_scrape_sums_both_workers(start_server: Callable[..., Server]) -> None:
    server = start_server()
    served = await _reach_both_workers(server)
    async with httpx.AsyncClient(
        base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        for _ in range(6):
            response = await client.get(
                f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id())
            )
            assert response.status_code == 404
        served = per_worker(server.metrics_dir, COUNT, HEALTHZ)
        lookups = per_worker(server.metrics_dir, COUNT, LOOKUP)
        text = (await client.get("/metrics")).text
    assert len(served) == 2
    assert scraped(text, COUNT, **HEALTHZ) == sum(served.values())
    assert scraped(text, COUNT, **LOOKUP) == sum(lookups.values()) == 6
    assert (
        scraped(text, "patient_search_db_query_duration_seconds_count", query="patient.get")
    ) == 6
    assert scraped(text, "patient_search_worker_processes") == 2
    # Gauges in livesum mode add up: two pools of at most 2 connections each.
    assert scraped(text, "patient_search_db_pool_max_connections") == 4
    assert (scraped(text, "process_resident_memory_bytes") or 0) > 20_000_000
    assert scraped(text, "patient_search_cache_requests_total", cache="search", result="hit") == 0

    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=30) == 0
    # Workers that shut down cleanly take their live gauges with them.
    assert not glob.glob(str(server.metrics_dir / "gauge_live*.db"))


async def test_the_supervisor_serves_the_separate_metrics_port(
    start_server: Callable[..., Server],
) -> None:
    metrics_port = free_port()
    server = start_server(metrics_port=str(metrics_port))
    served = await _reach_both_workers(server)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server.url}/metrics")).status_code == 404
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert scraped(text, COUNT, **HEALTHZ) == sum(served.values())
    assert scraped(text, "patient_search_worker_processes") == 2
