"""A circuit breaker around the cache: a failing cache costs one timeout, not one per request.

While the breaker is open every cache call is skipped at once (the request goes to the
database). Writes that had to reach the cache for correctness — replacing a profile after
a commit, moving a clinic's search generation — are remembered and replayed before the
cache is used again, so an outage cannot leave a stale value behind for later readers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from patient_search.cache.backends import CacheBackend

log = logging.getLogger("patient_search.cache")
T = TypeVar("T")
BreakerState = Literal["closed", "open"]
# Beyond this many remembered writes, recovery drops the whole cache instead.
MAX_PENDING_WRITES = 10_000


class CacheUnavailable(Exception):
    """The cache was skipped or failed; callers treat it as a miss."""


class GuardedBackend:
    """Runs backend calls through a breaker; failures raise CacheUnavailable, fast."""

    def __init__(
        self,
        backend: CacheBackend,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._state: BreakerState = "closed"
        self._probe: asyncio.Lock = asyncio.Lock()
        # Writes that must land before anyone reads again; keyed so repeats collapse.
        self._pending: dict[str, Callable[[], Awaitable[object]]] = {}
        self._overflowed = False

    @property
    def state(self) -> BreakerState:
        return self._state

    async def call(self, operation: Callable[[CacheBackend], Awaitable[T]]) -> T:
        """Run one backend operation, or raise CacheUnavailable."""
        if self._state == "open" and not await self._recovered():
            raise CacheUnavailable()
        try:
            result = await operation(self.backend)
        except Exception as exc:  # redis errors, timeouts, OS errors: all mean "no cache"
            self._failed(exc)
            raise CacheUnavailable() from None
        self._failures = 0
        return result

    async def must_write(
        self, key: str, operation: Callable[[CacheBackend], Awaitable[object]]
    ) -> None:
        """A write correctness depends on: done now, or replayed before the next read."""
        try:
            await self.call(operation)
        except CacheUnavailable:
            self._remember(key, lambda: operation(self.backend))

    def _remember(self, key: str, replay: Callable[[], Awaitable[object]]) -> None:
        if len(self._pending) >= MAX_PENDING_WRITES and key not in self._pending:
            self._overflowed = True
            self._pending.clear()
        if not self._overflowed:
            self._pending[key] = replay
        # Nothing may be read from the cache until the write has landed.
        self._open()

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures >= self._threshold and self._state == "closed":
            log.warning("cache_unavailable", extra={"error": type(exc).__name__})
            self._open()
        elif self._state == "open":
            self._open_until = self._clock() + self._cooldown_s

    def _open(self) -> None:
        self._state = "open"
        self._open_until = self._clock() + self._cooldown_s

    async def _recovered(self) -> bool:
        """After the cooldown one caller probes (and replays); the rest keep skipping."""
        if self._clock() < self._open_until or self._probe.locked():
            return False
        async with self._probe:
            try:
                await self.backend.ping()
                await self._replay()
            except Exception:
                self._open_until = self._clock() + self._cooldown_s
                return False
        self._state = "closed"
        self._failures = 0
        log.info("cache_recovered")
        return True

    async def _replay(self) -> None:
        if self._overflowed:
            await self.backend.clear()
            self._overflowed = False
            self._pending.clear()
            return
        while self._pending:
            key, replay = next(iter(self._pending.items()))
            await replay()
            # Only drop it if no newer write for the key was queued meanwhile.
            if self._pending.get(key) is replay:
                del self._pending[key]

    async def probe(self) -> str:
        """The cache state for /readyz: ok, or unavailable (requests use the database)."""
        try:
            await self.call(lambda backend: backend.ping())
        except CacheUnavailable:
            return "unavailable"
        return "ok"

    async def delete_quietly(self, keys: Sequence[str]) -> None:
        try:
            await self.call(lambda backend: backend.delete(keys))
        except CacheUnavailable:
            pass
