"""Reports statements slower than the configured threshold, by name only."""

from __future__ import annotations

import logging

from patient_search.observability.context import request_id

log = logging.getLogger("patient_search.slow_query")


class SlowQueryLog:
    """A query observer that logs a `slow_query` event past `threshold_ms`."""

    __slots__ = ("_threshold_s",)

    def __init__(self, threshold_ms: float) -> None:
        self._threshold_s = threshold_ms / 1000

    def observe(self, name: str, seconds: float, rows: int) -> None:
        """Log the statement's name, duration, row count and request — never SQL or parameters."""
        if seconds >= self._threshold_s:
            log.warning(
                "slow_query",
                extra={
                    "query": name,
                    "duration_ms": round(seconds * 1000, 3),
                    "rows": rows,
                    "request_id": request_id.get(),
                },
            )
