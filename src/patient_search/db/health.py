"""Whether PostgreSQL is reachable, so that requests fail at once while it is not.

psycopg_pool never hands connect errors to its waiters: with the server down every request
would wait the full acquire timeout (30 s), and after the server returns the pool reconnects
on a doubling backoff (decision 0002). The gate closes that gap:

- a broken connection coming back to the pool, or a request timing out on the pool, makes
  it *suspect* the database; a probe (a direct connection, `connect_timeout` bounded) then
  tells whether the server is down or only busy;
- while it is down, `admit` raises `DatabaseUnavailable` at once (a 503 with Retry-After),
  and requests already waiting for a connection are released with the same error;
- the probe repeats every `probe_interval_s`; when it connects again, `pool.check()` drops
  the connections the outage broke and refills the pool, and requests are admitted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar

import psycopg

log = logging.getLogger("patient_search.db")
T = TypeVar("T")
GateState = Literal["ok", "unavailable"]


class DatabaseUnavailable(psycopg.OperationalError):
    """The database is known to be down; raised instead of waiting for a connection."""


class CheckablePool(Protocol):
    """What the gate needs of the pool: a way to drop broken connections and refill."""

    async def check(self) -> None: ...


class DatabaseGate:
    """Admits connection requests while the database is up; refuses them fast while down."""

    def __init__(
        self,
        conninfo: str,
        *,
        connect_timeout_s: int,
        probe_interval_s: float = 0.5,
        application_name: str = "patient-search-probe",
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout_s,
            "application_name": application_name,
            "autocommit": True,
        }
        self._interval = probe_interval_s
        self._down = False
        self._down_since = 0.0
        self._suspected = asyncio.Event()
        # Requests waiting inside the pool; released (cancelled) when the database goes down.
        self._waiting: set[asyncio.Timeout] = set()
        self._task: asyncio.Task[None] | None = None
        self.outages = 0

    @property
    def state(self) -> GateState:
        return "unavailable" if self._down else "ok"

    def start(self, pool: CheckablePool) -> None:
        """Probe once now (a worker may start while the database is down), then on suspicion."""
        if self._task is None:
            self._suspected.set()
            self._task = asyncio.create_task(self._watch(pool, first=True), name="db-gate")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def suspect(self) -> None:
        """Something failed in a way an outage would explain: probe soon."""
        if not self._down:
            self._suspected.set()

    async def admit(self, getconn: Callable[[], Awaitable[T]]) -> T:
        """`getconn()`, unless the database is known down or goes down while it waits."""
        if self._down:
            raise DatabaseUnavailable("the database is unavailable")
        scope = asyncio.timeout(None)
        self._waiting.add(scope)
        try:
            async with scope:
                return await getconn()
        except TimeoutError:
            if scope.expired():  # released by _mark_down
                raise DatabaseUnavailable("the database is unavailable") from None
            raise
        finally:
            self._waiting.discard(scope)

    async def _watch(self, pool: CheckablePool, *, first: bool) -> None:
        while True:
            await self._suspected.wait()
            self._suspected.clear()
            try:
                await self._confirm(pool, first)
            except Exception as exc:  # the watcher must outlive any one bad probe
                log.error("database_probe_failed", extra={"error_type": type(exc).__name__})
            first = False
            # At most one probe per interval, however many requests raise suspicion.
            await asyncio.sleep(self._interval)

    async def _confirm(self, pool: CheckablePool, first: bool) -> None:
        was_down = False
        while not await self._probe():
            self._mark_down()
            was_down = True
            await asyncio.sleep(self._interval)
        if was_down or not first:
            # After a restart the idle connections are dead (whether or not anyone noticed
            # the outage), and the pool's own reconnection may be deep in its backoff: test
            # them all and refill now, before requests are admitted again.
            await pool.check()
        self._mark_up()

    async def _probe(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_kwargs)
        except (psycopg.Error, OSError):
            return False
        try:
            await conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        finally:
            await conn.close()
        return True

    def _mark_down(self) -> None:
        if self._down:
            return
        self._down, self._down_since = True, time.monotonic()
        self.outages += 1
        log.warning("database_down", extra={"waiting_requests": len(self._waiting)})
        now = asyncio.get_running_loop().time()
        for scope in list(self._waiting):
            scope.reschedule(now)

    def _mark_up(self) -> None:
        if not self._down:
            return
        self._down = False
        outage_s = time.monotonic() - self._down_since
        log.warning("database_recovered", extra={"outage_s": round(outage_s, 3)})
