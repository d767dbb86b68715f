"""The directory prometheus-client's multiprocess mode shares between worker processes.

Deliberately free of prometheus-client imports: the variable must be set before that library
is first imported in a process, because it picks its value store at import time.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from patient_search.settings import Settings

ENV: str = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory when this process runs in multiprocess mode."""
    return os.environ.get(ENV) or None


def prepare_directory(configured: str | None) -> tuple[str, bool]:
    """An empty metrics directory — `configured` wiped of old files, or a new temporary one.

    Returns the path and whether it was created here (and so should be removed at exit).
    Values left by a previous run would otherwise be merged into this run's counters.
    """
    if configured:
        os.makedirs(configured, exist_ok=True)
        for stale in glob.glob(os.path.join(configured, "*.db")):
            os.remove(stale)
        return configured, False
    return tempfile.mkdtemp(prefix="patient-search-metrics-"), True


@contextmanager
def server_metrics(settings: Settings, workers: int) -> Iterator[None]:
    """Around a server run: multiprocess mode for several workers, and the metrics port.

    With several workers (or PROMETHEUS_MULTIPROC_DIR already set) every worker writes to the
    shared directory and this process — the supervisor — serves METRICS_PORT, so one scrape
    covers the whole server. A directory created here is removed afterwards.
    """
    configured = multiprocess_dir()
    path, created = None, False
    if workers > 1 or configured:
        path, created = prepare_directory(configured)
        os.environ[ENV] = path
    stop: Callable[[], None] | None = None
    if path is not None and settings.metrics_enabled and settings.metrics_port:
        from patient_search.observability.exposition import start_metrics_server

        stop = start_metrics_server(settings.metrics_host, settings.metrics_port)
    try:
        yield
    finally:
        if stop is not None:
            stop()
        if created and path is not None:
            shutil.rmtree(path, ignore_errors=True)
            os.environ.pop(ENV, None)
