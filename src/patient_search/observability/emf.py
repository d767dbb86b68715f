"""An optional metrics sink: CloudWatch Embedded Metric Format (EMF) JSON lines on stdout.

CloudWatch Logs (awslogs driver, the CloudWatch agent, Lambda) turns each line into metrics;
`deploy/cloudwatch/alarms.yaml` alarms on them. Every worker flushes its own lines once a
minute; CloudWatch aggregates across workers and hosts. Like the Prometheus metrics, the
lines carry route templates and query names only.

Metrics (namespace from PATIENT_SEARCH_CLOUDWATCH_NAMESPACE):
  QueryDuration (ms, dimension Operation), SlowQueries (count; Operation and none),
  RequestDuration (ms), Requests, Errors5xx (count; Route — `GET /v1/patients` — and none),
  CacheHits, CacheMisses, CacheErrors (count), CacheHitRatio (%; Cache and none),
  PoolWaiters (most waiting at once), PoolUtilization (% of the pool in use, mean), Up (1).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from typing import Any, Final, TextIO

import orjson

from patient_search.observability.metrics import CACHE_REQUESTS, CACHES

FLUSH_INTERVAL_S: Final = 60.0
MAX_VALUES_PER_LINE: Final = 100  # the EMF limit for one metric's value array
MAX_VALUES_PER_WINDOW: Final = 1000  # a uniform sample beyond this keeps percentiles honest


class _Samples:
    """The count of a window's observations and a uniform sample of their values."""

    __slots__ = ("count", "values")

    def __init__(self) -> None:
        self.count = 0
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < MAX_VALUES_PER_WINDOW:
            self.values.append(value)
        else:  # reservoir sampling (Algorithm R)
            slot = random.randrange(self.count)
            if slot < MAX_VALUES_PER_WINDOW:
                self.values[slot] = value


class EmfSink:
    """Buffers one window of observations; `flush` writes them as EMF lines."""

    def __init__(self, namespace: str, slow_query_ms: float, stream: TextIO | None = None) -> None:
        self._namespace = namespace
        self._slow_s = slow_query_ms / 1000
        self._stream = stream
        self._task: asyncio.Task[None] | None = None
        self._cache_seen = _cache_counts()
        self._reset()

    def _reset(self) -> None:
        self._queries: dict[str, _Samples] = {}
        self._slow: dict[str, int] = {}
        self._requests: dict[str, _Samples] = {}
        self._errors: dict[str, int] = {}
        self._pool_waiting = 0
        self._pool_utilization_sum = 0.0
        self._pool_samples = 0

    def observe(self, name: str, seconds: float, rows: int) -> None:
        """A query observer: buffer one statement's duration."""
        samples = self._queries.get(name)
        if samples is None:
            samples = self._queries[name] = _Samples()
        samples.add(seconds * 1000)
        if seconds >= self._slow_s:
            self._slow[name] = self._slow.get(name, 0) + 1

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Buffer one request's duration and outcome, under `GET /v1/patients`-style routes."""
        route = f"{method} {route}"  # search (GET) and create (POST) share a template
        samples = self._requests.get(route)
        if samples is None:
            samples = self._requests[route] = _Samples()
        samples.add(seconds * 1000)
        if status >= 500:
            self._errors[route] = self._errors.get(route, 0) + 1

    def record_pool(self, in_use: int, max_size: int, waiting: int) -> None:
        """Buffer one sample of the pool's state."""
        self._pool_waiting = max(self._pool_waiting, waiting)
        self._pool_utilization_sum += 100.0 * in_use / max_size if max_size else 0.0
        self._pool_samples += 1

    def flush(self) -> int:
        """Write the window's lines and start a new window; the number of lines written."""
        timestamp = int(time.time() * 1000)
        lines: list[dict[str, Any]] = []
        for operation, samples in self._queries.items():
            for first, chunk in _chunks(samples.values):
                counts = {"SlowQueries": self._slow.get(operation, 0)} if first else {}
                lines.append(
                    self._line(
                        timestamp,
                        [["Operation"]],
                        {"Operation": operation},
                        {"QueryDuration": ("Milliseconds", chunk)}
                        | {k: ("Count", v) for k, v in counts.items()},
                    )
                )
        for route, samples in self._requests.items():
            for first, chunk in _chunks(samples.values):
                counts = (
                    {"Requests": samples.count, "Errors5xx": self._errors.get(route, 0)}
                    if first
                    else {}
                )
                lines.append(
                    self._line(
                        timestamp,
                        [["Route"], []],
                        {"Route": route},
                        {"RequestDuration": ("Milliseconds", chunk)}
                        | {k: ("Count", v) for k, v in counts.items()},
                    )
                )
        lines.extend(self._cache_lines(timestamp))
        service: dict[str, tuple[str, Any]] = {
            "Up": ("Count", 1),
            "SlowQueries": ("Count", sum(self._slow.values())),
            "PoolWaiters": ("Count", self._pool_waiting),
        }
        if self._pool_samples:
            service["PoolUtilization"] = (
                "Percent",
                round(self._pool_utilization_sum / self._pool_samples, 2),
            )
        lines.append(self._line(timestamp, [[]], {}, service))
        self._reset()
        stream = self._stream or sys.stdout
        stream.write("".join(orjson.dumps(line).decode() + "\n" for line in lines))
        stream.flush()
        return len(lines)

    def _cache_lines(self, timestamp: int) -> list[dict[str, Any]]:
        now = _cache_counts()
        lines = []
        for cache in CACHES:
            delta = {
                result: now[(cache, result)] - self._cache_seen.get((cache, result), 0.0)
                for result in ("hit", "miss", "error")
            }
            lookups = sum(delta.values())
            if not lookups:
                continue
            lines.append(
                self._line(
                    timestamp,
                    [["Cache"], []],
                    {"Cache": cache},
                    {
                        "CacheHits": ("Count", delta["hit"]),
                        "CacheMisses": ("Count", delta["miss"]),
                        "CacheErrors": ("Count", delta["error"]),
                        "CacheHitRatio": ("Percent", round(100.0 * delta["hit"] / lookups, 2)),
                    },
                )
            )
        self._cache_seen = now
        return lines

    def _line(
        self,
        timestamp: int,
        dimensions: list[list[str]],
        dimension_values: dict[str, str],
        metrics: dict[str, tuple[str, Any]],
    ) -> dict[str, Any]:
        return {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._namespace,
                        "Dimensions": dimensions,
                        "Metrics": [
                            {"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()
                        ],
                    }
                ],
            },
            "Service": "patient-search",
            **dimension_values,
            **{name: value for name, (_, value) in metrics.items()},
        }

    def start(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        """Flush every `interval_s` on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(interval_s), name="emf")

    async def stop(self) -> None:
        """Stop the timer and write what is buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    async def _run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.flush()


def _chunks(values: list[float]) -> list[tuple[bool, list[float]]]:
    rounded = [round(value, 3) for value in values]
    return [
        (start == 0, rounded[start : start + MAX_VALUES_PER_LINE])
        for start in range(0, len(rounded), MAX_VALUES_PER_LINE)
    ]


def _cache_counts() -> dict[tuple[str, str], float]:
    """This process's cache counters (in multiprocess mode too: each worker reports its own)."""
    counts: dict[tuple[str, str], float] = {}
    for family in CACHE_REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[(sample.labels["cache"], sample.labels["result"])] = sample.value
    return counts
