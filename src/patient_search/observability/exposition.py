"""Serving the metrics: this process's registry, or every worker's files merged into one scrape."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from patient_search.observability.multiprocess import multiprocess_dir

# Files of gauges in a live* mode exist until their process is marked dead: they list workers.
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")
_SUMMED = frozenset({"virtual_memory_bytes", "resident_memory_bytes", "cpu_seconds", "open_fds"})


def worker_pids(path: str) -> list[int]:
    """Pids of the live workers writing to `path`; dead ones are marked dead on the way."""
    pids: set[int] = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_FILE.search(name)
        if match:
            pids.add(int(match.group(1)))
    alive = []
    for pid in sorted(pids):
        if _alive(pid):
            alive.append(pid)
        else:
            # A worker killed without a clean shutdown (uvicorn restarts it under a new pid).
            mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerProcessCollector(Collector):
    """The standard `process_*` metrics summed over the live workers (RSS, CPU, open fds).

    prometheus-client's own ProcessCollector reports only the scraping process, which in
    multiprocess mode would be one worker chosen at random.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterator[Metric]:
        pids = worker_pids(self._path)
        totals: dict[str, float] = {}
        for pid in pids:
            process = ProcessCollector(pid=_constant(pid), registry=None)
            for family in process.collect():
                name = family.name.removeprefix("process_")
                value = family.samples[0].value
                if name in _SUMMED:
                    totals[name] = totals.get(name, 0.0) + value
                elif name == "start_time_seconds":
                    totals[name] = min(totals.get(name, value), value)
                else:
                    totals[name] = max(totals.get(name, value), value)
        yield GaugeMetricFamily(
            "patient_search_worker_processes",
            "Live worker processes whose metrics this scrape merges.",
            value=len(pids),
        )
        for name, value in totals.items():
            if name == "cpu_seconds":
                yield CounterMetricFamily(
                    "process_cpu_seconds", "User and system CPU time of the workers.", value=value
                )
            else:
                yield GaugeMetricFamily(f"process_{name}", f"Workers' {name}.", value=value)


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


@lru_cache(maxsize=4)
def _merged_registry(path: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    registry.register(WorkerProcessCollector(path))
    return registry


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or all workers' files merged."""
    path = multiprocess_dir()
    return REGISTRY if path is None else _merged_registry(path)


def render() -> bytes:
    """The whole server's metrics in the Prometheus text format."""
    return generate_latest(scrape_registry())


async def metrics_endpoint() -> Response:
    """GET /metrics on the API port."""
    # Merging the workers' files is file I/O; keep it off the event loop.
    body = await run_in_threadpool(render)
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def start_metrics_server(host: str, port: int) -> Callable[[], None]:
    """Serve the metrics on a port of their own from a thread; the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=scrape_registry())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def mark_this_process_dead() -> None:
    """Drop this worker's live gauges from the merged view (at a clean shutdown)."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
