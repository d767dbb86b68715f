"""Per-request cost of the observability middleware and per-statement cost of the query observer.

    .venv/bin/python bench/observability_overhead.py

Drives the pure-ASGI middleware around a no-op app (request id, histogram, one JSON log line
written to /dev/null) and the composite query observer (histogram + slow-query check), in-process.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

from patient_search.db.statements import CompositeObserver
from patient_search.observability.logs import JsonFormatter
from patient_search.observability.metrics import QueryMetrics
from patient_search.observability.middleware import RequestObservability
from patient_search.observability.slow_queries import SlowQueryLog

ROUNDS, PER_ROUND = 7, 20_000


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _send(message: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request"}


def _scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/x", "headers": [(b"host", b"t")]}


async def _per_request(app: Any) -> float:
    started = time.perf_counter()
    for _ in range(PER_ROUND):
        await app(_scope(), _receive, _send)
    return (time.perf_counter() - started) / PER_ROUND


async def main() -> None:
    handler = logging.FileHandler("/dev/null")
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("patient_search")
    logger.handlers[:] = [handler]
    logger.setLevel("INFO")
    logger.propagate = False
    wrapped = RequestObservability(_noop)
    bare = [await _per_request(_noop) for _ in range(ROUNDS)]
    full = [await _per_request(wrapped) for _ in range(ROUNDS)]
    overhead = statistics.median(full) - statistics.median(bare)
    print(f"middleware: {overhead * 1e6:.1f} µs per request (median of {ROUNDS} x {PER_ROUND})")

    observer = CompositeObserver(QueryMetrics(100), SlowQueryLog(100))
    runs = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(PER_ROUND):
            observer.observe("patient.get", 0.0004, 1)
        runs.append((time.perf_counter() - started) / PER_ROUND)
    print(f"query observer: {statistics.median(runs) * 1e6:.2f} µs per statement")


if __name__ == "__main__":
    asyncio.run(main())
