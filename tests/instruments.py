"""Instruments tests attach to a running app: what reached the database, by statement name."""

from __future__ import annotations

from collections import Counter

from patient_search.db.statements import QueryObserver


class CountingObserver:
    """Counts statements by name, then passes them on."""

    def __init__(self, inner: QueryObserver) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()

    def observe(self, name: str, seconds: float, rows: int) -> None:
        self.counts[name] += 1
        self.inner.observe(name, seconds, rows)
