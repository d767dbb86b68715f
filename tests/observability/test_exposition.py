"""Multiprocess plumbing in-process: the shared directory, dead workers, the merged scrape."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from patient_search.observability import exposition
from patient_search.observability.multiprocess import ENV, prepare_directory, server_metrics
from tests.conftest import make_settings
from tests.observability.helpers import free_port, scraped


def _write_gauge(directory: Path, pid: int, name: str, value: float) -> None:
    """A worker's live-gauge file, as prometheus-client writes it."""
    values = MmapedDict(str(directory / f"gauge_livesum_{pid}.db"))
    key = json.dumps([name, name, {}, "test gauge"], sort_keys=True)
    values.write_value(key, value, 0.0)
    values.close()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_worker_pids_lists_live_workers_and_reaps_dead_ones(tmp_path: Path) -> None:
    dead = _dead_pid()
    _write_gauge(tmp_path, os.getpid(), "patient_search_db_pool_waiting", 1)
    _write_gauge(tmp_path, dead, "patient_search_db_pool_waiting", 5)
    assert exposition.worker_pids(str(tmp_path)) == [os.getpid()]
    assert not (tmp_path / f"gauge_livesum_{dead}.db").exists()


async def test_the_metrics_route_merges_the_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: httpx.AsyncClient
) -> None:
    _write_gauge(tmp_path, os.getpid(), "patient_search_db_pool_waiting", 3)
    monkeypatch.setenv(ENV, str(tmp_path))
    text = (await client.get("/metrics")).text
    assert scraped(text, "patient_search_db_pool_waiting") == 3
    assert scraped(text, "patient_search_worker_processes") == 1
    assert (scraped(text, "process_resident_memory_bytes") or 0) > 0
    assert (scraped(text, "process_cpu_seconds_total") or 0) > 0
    assert (scraped(text, "process_open_fds") or 0) > 0
    assert (scraped(text, "process_max_fds") or 0) > 0


def test_prepare_directory_wipes_a_configured_one_or_makes_a_temporary_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"old run")
    (tmp_path / "keep.txt").write_text("not ours")
    assert prepare_directory(str(tmp_path)) == (str(tmp_path), False)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    made, created = prepare_directory(None)
    assert created and Path(made).is_dir()
    Path(made).rmdir()


def test_server_metrics_sets_up_multiprocess_mode_and_the_port(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    port = free_port()
    settings = make_settings(database_url, metrics_port=port)
    with server_metrics(settings, workers=2):
        directory = os.environ[ENV]
        assert Path(directory).is_dir()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "patient_search_worker_processes 0.0" in body
    assert ENV not in os.environ
    assert not Path(directory).exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_one_worker_without_a_directory_stays_in_single_process_mode(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with server_metrics(make_settings(database_url, metrics_port=free_port()), workers=1):
        assert ENV not in os.environ  # the app's lifespan serves the port itself
