"""A background task sampling event-loop lag and the connection pool's state."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

from patient_search.observability.metrics import EVENT_LOOP_LAG, set_pool_state

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from patient_search.observability.emf import EmfSink

# A 0.5 s tick costs nothing measurable; the lag gauge shows the worst of the last 15 s, so a
# stall between two scrapes is not missed.
SAMPLE_INTERVAL_S = 0.5
LAG_WINDOW_S = 15.0


class RuntimeSampler:
    """Every tick: how late the loop woke us (CPU or blocking work starving requests), and the
    pool's idle / in-use / waiting counts."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        emf: EmfSink | None = None,
        interval_s: float = SAMPLE_INTERVAL_S,
        lag_window_s: float = LAG_WINDOW_S,
    ) -> None:
        self._pool = pool
        self._emf = emf
        self._interval_s = interval_s
        self._lags: deque[float] = deque(maxlen=max(1, round(lag_window_s / interval_s)))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling on the running loop."""
        self.sample_pool()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="runtime-sampler")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self._interval_s)
            self.record_lag(loop.time() - started - self._interval_s)
            self.sample_pool()

    def record_lag(self, lag_s: float) -> None:
        """Account one tick's lateness."""
        self._lags.append(max(lag_s, 0.0))
        EVENT_LOOP_LAG.set(max(self._lags))

    def sample_pool(self) -> None:
        """Publish the pool's current state."""
        stats = self._pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        waiting = stats.get("requests_waiting", 0)
        max_size = stats.get("pool_max", 0)
        set_pool_state(idle, size - idle, max_size, waiting)
        if self._emf is not None:
            self._emf.record_pool(size - idle, max_size, waiting)
