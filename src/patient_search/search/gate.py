"""At most a few database searches of one clinic at once, so one clinic cannot take the pool.

Per worker: a clinic's searches past `limit` wait up to `wait_s` for one of its slots, then
get 503 with Retry-After. Other clinics' searches never wait behind them. Cached pages take
no slot: only the database path is gated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from patient_search.errors import SearchesBusy


class _Slots:
    __slots__ = ("free", "users")

    def __init__(self, limit: int) -> None:
        self.free = asyncio.Semaphore(limit)
        self.users = 0  # holding or waiting: the entry is dropped when it falls to 0


class ClinicGate:
    """Bounds each clinic's concurrent database searches in this worker."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self._limit = limit
        self._wait_s = wait_s
        self._clinics: dict[str, _Slots] = {}

    @asynccontextmanager
    async def slot(self, clinic_id: str) -> AsyncIterator[None]:
        """Hold one of the clinic's slots; SearchesBusy when none frees up in time."""
        if self._limit <= 0:
            yield
            return
        slots = self._clinics.get(clinic_id)
        if slots is None:
            slots = self._clinics[clinic_id] = _Slots(self._limit)
        slots.users += 1
        try:
            if slots.free.locked():
                try:
                    await asyncio.wait_for(slots.free.acquire(), self._wait_s)
                except TimeoutError:
                    raise SearchesBusy(retry_after_s=1) from None
            else:
                await slots.free.acquire()  # free: taken at once, even when wait_s is 0
            try:
                yield
            finally:
                slots.free.release()
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._clinics[clinic_id]
