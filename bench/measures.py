"""Client-side measures of a run: every request as a `Sample`, summarised into a `Latency`."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Statuses that are a correct answer for the scenario (412: a concurrent update won, by design).
EXPECTED = frozenset({200, 201, 204, 412})


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: when it started (epoch s), its name, latency, status."""

    start: float
    name: str
    ms: float
    status: int
    retry_after: bool = False
    key: str = ""

    @property
    def end(self) -> float:
        return self.start + self.ms / 1000


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles, throughput and errors of a group of requests over a measured window."""

    n: int
    per_s: float
    errors: int
    p50: float
    p95: float
    p99: float
    max: float

    @property
    def error_share(self) -> float:
        return self.errors / self.n if self.n else 0.0


def read_samples(path: Path) -> list[Sample]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Sample(
                float(r["start"]),
                r["name"],
                float(r["ms"]),
                int(r["status"]),
                r["retry_after"] == "1",
                r["key"],
            )
            for r in csv.DictReader(handle)
        ]


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def measured(samples: Sequence[Sample], warmup_s: float) -> tuple[list[Sample], float]:
    """The samples after the warm-up, and the window's length in seconds."""
    if not samples:
        return [], 0.0
    begin = min(s.start for s in samples) + warmup_s
    kept = [s for s in samples if s.start >= begin]
    if not kept:
        return [], 0.0
    return kept, max(s.end for s in kept) - begin


def summarise(
    samples: Iterable[Sample], window_s: float, accept: Callable[[Sample], bool] = lambda s: True
) -> Latency | None:
    """The accepted samples' latency; None when there are none."""
    chosen = [s for s in samples if accept(s)]
    if not chosen:
        return None
    ms = [s.ms for s in chosen]
    return Latency(
        n=len(chosen),
        per_s=len(chosen) / window_s if window_s > 0 else 0.0,
        errors=sum(1 for s in chosen if s.status not in EXPECTED),
        p50=percentile(ms, 0.50),
        p95=percentile(ms, 0.95),
        p99=percentile(ms, 0.99),
        max=max(ms),
    )


def named(prefix: str) -> Callable[[Sample], bool]:
    """Requests whose name is `prefix` or starts with `prefix.` (`search` → `search.*`)."""
    return lambda s: s.name == prefix or s.name.startswith(prefix + ".")


def first_and_repeat(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Requests for a key never asked before in the run, and the repeats (in start order)."""
    seen: set[str] = set()
    first: list[Sample] = []
    repeat: list[Sample] = []
    for s in sorted(samples, key=lambda s: s.start):
        (repeat if s.key in seen else first).append(s)
        seen.add(s.key)
    return first, repeat


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
