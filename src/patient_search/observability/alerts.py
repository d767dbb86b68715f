"""An in-process slow-query alert for deployments without Prometheus: a rate-limited webhook.

When a worker sees `threshold` slow statements within `window_s`, it POSTs one JSON alert —
counts and query names, never SQL, parameters or anything about a patient — then stays quiet
for `min_interval_s`. Each worker counts its own statements.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

log = logging.getLogger("patient_search.alerts")

ALERT_NAME = "PatientSearchSlowQueries"
POST_TIMEOUT_S = 5.0


class SlowQueryAlerts:
    """A query observer that fires the webhook when slow statements bunch up."""

    def __init__(
        self,
        url: str,
        slow_query_ms: float,
        threshold: int,
        window_s: float,
        min_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._slow_ms = slow_query_ms
        self._slow_s = slow_query_ms / 1000
        self._threshold = threshold
        self._window_s = window_s
        self._min_interval_s = min_interval_s
        self._clock = clock
        # The last `threshold` slow statements: once full, its oldest entry says whether they
        # all fell within the window.
        self._recent: deque[tuple[float, str]] = deque(maxlen=threshold)
        self._last_sent: float | None = None
        self._deliveries: set[asyncio.Future[None]] = set()
        self.sent = 0

    def observe(self, name: str, seconds: float, rows: int) -> None:
        """Count a slow statement; fire when the window holds `threshold` of them."""
        if seconds < self._slow_s:
            return
        now = self._clock()
        self._recent.append((now, name))
        if len(self._recent) < self._threshold or now - self._recent[0][0] > self._window_s:
            return
        if self._last_sent is not None and now - self._last_sent < self._min_interval_s:
            return
        self._last_sent = now
        self._send(orjson.dumps(self._payload(now)))

    def _payload(self, now: float) -> dict[str, Any]:
        by_query = Counter(name for _, name in self._recent)
        span = now - self._recent[0][0]
        return {
            "alert": ALERT_NAME,
            "status": "firing",
            "service": "patient-search",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "summary": (
                f"{len(self._recent)} statements slower than {self._slow_ms:g} ms "
                f"within {span:.0f} s (limit {self._threshold} per {self._window_s:g} s)"
            ),
            "slow_queries": len(self._recent),
            "window_s": self._window_s,
            "threshold_ms": self._slow_ms,
            "queries": dict(by_query.most_common()),
            "runbook": "docs/operations.md#patientsearchslowqueries",
        }

    def _send(self, body: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop (a tool, a thread)
            threading.Thread(target=self._deliver, args=(body,), daemon=True).start()
            return
        future = loop.run_in_executor(None, self._deliver, body)
        self._deliveries.add(future)
        future.add_done_callback(self._deliveries.discard)

    def _deliver(self, body: bytes) -> None:
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "patient-search-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:
                status = response.status
        except Exception as exc:  # a broken receiver must never hurt the service
            log.warning("alert_webhook_failed", extra={"error_type": type(exc).__name__})
            return
        self.sent += 1
        log.warning("alert_sent", extra={"alert": ALERT_NAME, "status": status})

    async def drain(self, timeout_s: float = POST_TIMEOUT_S) -> None:
        """Wait for deliveries in flight (at shutdown)."""
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=timeout_s)
