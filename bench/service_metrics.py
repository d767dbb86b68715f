"""What the service's own /metrics say about a run: parsed scrapes, deltas and quantiles.

The names are the service's contract (observability/metrics.py). Any of them may be missing
while that work is in progress: every reader here returns None for an absent series, and the
report prints "n/a" instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

HTTP_DURATION = "patient_search_http_request_duration_seconds"
DB_DURATION = "patient_search_db_query_duration_seconds"
CACHE_REQUESTS = "patient_search_cache_requests_total"
POOL_CONNECTIONS = "patient_search_db_pool_connections"
POOL_MAX = "patient_search_db_pool_max_connections"
POOL_WAITING = "patient_search_db_pool_waiting"
POOL_ACQUIRE = "patient_search_db_pool_acquire_seconds"
# Routes that are not the service's work: excluded from "database share of a request".
OPS_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})

Labels = frozenset[tuple[str, str]]
Where = Callable[[dict[str, str]], bool]


def _any(labels: dict[str, str]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics response: every sample by (name, labels)."""

    values: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        values: dict[tuple[str, Labels], float] = {}
        if text:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    values[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(values)

    def has(self, name: str) -> bool:
        return any(key[0] == name for key in self.values)

    def total(self, name: str, where: Where = _any) -> float | None:
        """The sum of a sample over the label sets `where` accepts; None when absent."""
        found = [v for (n, labels), v in self.values.items() if n == name and where(dict(labels))]
        return sum(found) if found else None

    def minus(self, earlier: Scrape) -> Scrape:
        """Counters and histograms accumulated since `earlier` (gauges are meaningless here)."""
        return Scrape({k: v - earlier.values.get(k, 0.0) for k, v in self.values.items()})


def quantile(scrape: Scrape, histogram: str, q: float, where: Where = _any) -> float | None:
    """The q-quantile of a histogram's (delta) buckets, interpolated as Prometheus does."""
    buckets: dict[float, float] = {}
    for (name, labels), value in scrape.values.items():
        if name != histogram + "_bucket":
            continue
        plain = dict(labels)
        bound = float(plain.pop("le"))
        if where(plain):
            buckets[bound] = buckets.get(bound, 0.0) + value
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def service_routes(labels: dict[str, str]) -> bool:
    return labels.get("route") not in OPS_ROUTES


def database_share(delta: Scrape) -> float | None:
    """Seconds in SQL statements ÷ seconds in (non-ops) requests, over a run."""
    database = delta.total(DB_DURATION + "_sum")
    requests = delta.total(HTTP_DURATION + "_sum", service_routes)
    if database is None or not requests:
        return None
    return database / requests


def cache_counts(delta: Scrape, cache: str | None = None) -> dict[str, float] | None:
    """Look-ups by result (hit, miss, error) over a run, for one cache or all."""
    if not delta.has(CACHE_REQUESTS):
        return None

    def counted(result: str) -> float:
        def where(labels: dict[str, str]) -> bool:
            return labels.get("result") == result and cache in (None, labels.get("cache"))

        return delta.total(CACHE_REQUESTS, where) or 0.0

    return {result: counted(result) for result in ("hit", "miss", "error")}


def hit_ratio(counts: dict[str, float] | None) -> float | None:
    if not counts:
        return None
    looked_up = sum(counts.values())
    return counts["hit"] / looked_up if looked_up else None


def peak(scrapes: Iterable[Scrape], name: str, where: Where = _any) -> float | None:
    """The largest value a gauge showed over the samples."""
    seen = [v for s in scrapes if (v := s.total(name, where)) is not None]
    return max(seen) if seen else None


def in_use(labels: dict[str, str]) -> bool:
    return labels.get("state") == "in_use"
