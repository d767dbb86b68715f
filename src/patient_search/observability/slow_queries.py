"""Reports statements slower than the configured threshold, by name only."""

from __future__ import annotations

import logging

log = logging.getLogger("patient_search.slow_query")


class SlowQueryLog:
    """A query observer that logs a `slow_query` event past `threshold_ms`."""

    def __init__(self, threshold_ms: float) -> None:
        self._threshold_s = threshold_ms / 1000

    def observe(self, name: str, seconds: float, rows: int) -> None:
        """Log the statement's name, duration and row count — never its SQL or parameters."""
        if seconds >= self._threshold_s:
            log.warning(
                "slow_query",
                extra={"query": name, "duration_ms": round(seconds * 1000, 3), "rows": rows},
            )
