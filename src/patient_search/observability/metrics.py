"""The service's Prometheus metrics; the names are a deployment contract (docs/operations.md).

Labels carry route templates, query names and fixed enums only — never a path, a parameter
or anything a user typed — so a scrape cannot leak patient data and cardinality stays bounded.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before this module is first imported, as
`patient-search serve --workers N` does) every worker writes its values to memory-mapped files
that one scrape merges; the gauges say how (`livesum`: the whole server, `livemax`: the worst
worker).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double the series count and no alert or dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Bounds at 2 ms / 20 ms and 100 ms / 2 s exactly: those are the distinctions the SLOs
# (lookup p95 < 100 ms, search p95 < 2 s) and the alerts draw.
REQUEST_BUCKETS: Final = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
QUERY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
ACQUIRE_BUCKETS: Final = (
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
)  # fmt: skip

CACHES: Final = ("profile", "summary", "search")
CACHE_RESULTS: Final = ("hit", "miss", "error")
JOURNAL_REJECTIONS: Final = ("signature", "time", "unreadable")

HTTP_REQUEST_DURATION = Histogram(
    "patient_search_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route template.",
    ("method", "route", "status"),
    buckets=REQUEST_BUCKETS,
)
DB_QUERY_DURATION = Histogram(
    "patient_search_db_query_duration_seconds",
    "Time of one named SQL statement, execute to last row fetched.",
    ("query",),
    buckets=QUERY_BUCKETS,
)
SLOW_QUERIES = Counter(
    "patient_search_slow_queries",
    "Statements slower than PATIENT_SEARCH_SLOW_QUERY_MS, by query name.",
    ("query",),
)
CACHE_REQUESTS = Counter(
    "patient_search_cache_requests",
    "Cache look-ups by cache and result (hit, miss, error).",
    ("cache", "result"),
)
# Either counter rising means something writes to Redis that should not, or a deployment
# mixes releases (or secrets) whose MACs do not agree: alert-worthy, never routine.
CACHE_REJECTED = Counter(
    "patient_search_cache_rejected",
    "Cache values whose MAC did not verify (read as a miss), by cache.",
    ("cache",),
)
AUDIT_JOURNAL_REJECTED = Counter(
    "patient_search_audit_journal_rejected",
    "Audit-journal entries the drain dropped unwritten, by reason (signature, time, unreadable).",
    ("reason",),
)
DB_POOL_CONNECTIONS = Gauge(
    "patient_search_db_pool_connections",
    "Open pooled connections by state (idle, in_use), summed over the workers.",
    ("state",),
    multiprocess_mode="livesum",
)
DB_POOL_MAX_CONNECTIONS = Gauge(
    "patient_search_db_pool_max_connections",
    "Configured maximum pool size, summed over the workers.",
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "patient_search_db_pool_waiting",
    "Requests waiting for a pooled connection, summed over the workers.",
    multiprocess_mode="livesum",
)
DB_POOL_ACQUIRE = Histogram(
    "patient_search_db_pool_acquire_seconds",
    "Time to get a connection from the pool (including failed attempts).",
    buckets=ACQUIRE_BUCKETS,
)
EVENT_LOOP_LAG = Gauge(
    "patient_search_event_loop_lag_seconds",
    "Worst event-loop lag seen over the last sampling window (15 s), worst worker.",
    multiprocess_mode="livemax",
)

_POOL_IDLE = DB_POOL_CONNECTIONS.labels("idle")
_POOL_IN_USE = DB_POOL_CONNECTIONS.labels("in_use")
_CACHE_CHILDREN: Final = {
    (cache, result): CACHE_REQUESTS.labels(cache, result)
    for cache in CACHES
    for result in CACHE_RESULTS
}
_CACHE_REJECTED_CHILDREN: Final = {cache: CACHE_REJECTED.labels(cache) for cache in CACHES}
_JOURNAL_REJECTED_CHILDREN: Final = {
    reason: AUDIT_JOURNAL_REJECTED.labels(reason) for reason in JOURNAL_REJECTIONS
}


def record_cache(cache: str, result: str) -> None:
    """Count one cache look-up; `cache` in profile|summary|search, `result` in hit|miss|error."""
    child = _CACHE_CHILDREN.get((cache, result))
    if child is None:
        raise ValueError(f"unknown cache {cache!r} or result {result!r}")
    child.inc()


def record_cache_rejected(cache: str) -> None:
    """Count one cache value rejected for its MAC; `cache` in profile|summary|search."""
    child = _CACHE_REJECTED_CHILDREN.get(cache)
    if child is None:
        raise ValueError(f"unknown cache {cache!r}")
    child.inc()


def record_journal_rejected(reason: str, count: int) -> None:
    """Count audit-journal entries the drain rejected; `reason` in signature|time|unreadable."""
    child = _JOURNAL_REJECTED_CHILDREN.get(reason)
    if child is None:
        raise ValueError(f"unknown rejection reason {reason!r}")
    child.inc(count)


def observe_pool_acquire(seconds: float) -> None:
    """Record how long one connection request waited."""
    DB_POOL_ACQUIRE.observe(seconds)


def set_pool_state(idle: int, in_use: int, max_size: int, waiting: int) -> None:
    """Publish one sample of the pool's state."""
    _POOL_IDLE.set(idle)
    _POOL_IN_USE.set(in_use)
    DB_POOL_MAX_CONNECTIONS.set(max_size)
    DB_POOL_WAITING.set(waiting)


class QueryMetrics:
    """A query observer: the duration histogram, and the slow-query counter past the threshold."""

    __slots__ = ("_children", "_slow_s")

    def __init__(self, slow_query_ms: float) -> None:
        self._slow_s = slow_query_ms / 1000
        # Query names are a fixed set from the repositories; labels() costs a lock and checks.
        self._children: dict[str, Histogram] = {}

    def observe(self, name: str, seconds: float, rows: int) -> None:
        """Record one statement's duration."""
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = DB_QUERY_DURATION.labels(name)
        child.observe(seconds)
        if seconds >= self._slow_s:
            SLOW_QUERIES.labels(name).inc()
