"""Running one load: Locust headless in a subprocess, with the server sampled meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from measures import Sample, read_samples
from server import Sampler, Server, Tick

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True, slots=True)
class Load:
    """A Locust user class at a number of users for a duration; `env` are its BENCH_ knobs."""

    user_class: str
    users: int
    duration_s: int
    env: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class LoadResult:
    samples: list[Sample]
    ticks: list[Tick]
    hung: int  # requests still outstanding past the locustfile's HANG_S when the run ended
    returncode: int


def run_locust(
    load: Load,
    server: Server,
    fixtures: Path,
    raw_dir: Path,
    label: str,
    sampler: Sampler | None = None,
) -> LoadResult:
    """Run `load` against `server` while `sampler` (default: every second) watches the server.

    Raw CSVs go to `raw_dir/label*`.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    samples_path = raw_dir / f"{label}.samples.csv"
    env = {
        **os.environ,
        **load.env,
        "BENCH_FIXTURES": str(fixtures),
        "BENCH_TOKENS": str(server.tokens_path),
        "BENCH_SAMPLES": str(samples_path),
    }
    command = [
        str(REPO / ".venv" / "bin" / "locust"),
        "-f", str(LOCUSTFILE),
        "--headless",
        "--host", server.url,
        "-u", str(load.users),
        "-r", str(load.users),
        "-t", f"{load.duration_s}s",
        "--csv", str(raw_dir / label),
        "--only-summary",
        "--loglevel", "WARNING",
        "--exit-code-on-error", "0",
        load.user_class,
    ]  # fmt: skip
    with sampler or Sampler(server) as watching:
        done = subprocess.run(
            command,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=load.duration_s + 120,
        )
    (raw_dir / f"{label}.locust.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if not samples_path.exists():
        raise RuntimeError(f"locust wrote no samples for {label}:\n{done.stderr[-2000:]}")
    inflight = json.loads(Path(str(samples_path) + ".inflight.json").read_text())
    return LoadResult(read_samples(samples_path), watching.ticks, inflight["hung"], done.returncode)
