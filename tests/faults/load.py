"""Closed-loop load for the fault tests: a few clients, each sending requests back to back."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

# A request that has not answered by then is a hang, recorded as status 0.
HANG_S = 40.0


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str
    started: float
    seconds: float
    status: int
    retry_after: str | None

    @property
    def finished(self) -> float:
        return self.started + self.seconds


Request = Callable[[int], tuple[str, Awaitable[httpx.Response]]]


@dataclass
class Load:
    """Runs `clients` loops of `request(n)` until stopped; every outcome is kept, in order."""

    request: Request
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, index: int) -> None:
        n = index
        while not self._stop.is_set():
            kind, pending = self.request(n)
            n += self.clients
            started = time.monotonic()
            try:
                response = await asyncio.wait_for(pending, HANG_S)
                status, retry_after = response.status_code, response.headers.get("retry-after")
            except TimeoutError:
                status, retry_after = 0, None
            self.outcomes.append(
                Outcome(kind, started, time.monotonic() - started, status, retry_after)
            )
            await asyncio.sleep(0)  # let the other clients and the test's own steps run

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.started < end]


def percentile_ms(outcomes: list[Outcome], fraction: float) -> float:
    if not outcomes:
        return 0.0
    ordered = sorted(o.seconds for o in outcomes)
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median_ms(outcomes: list[Outcome]) -> float:
    return 1000 * statistics.median(o.seconds for o in outcomes) if outcomes else 0.0
