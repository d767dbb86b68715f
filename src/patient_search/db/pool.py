"""The PostgreSQL connection pool, every connection switched to the row-level-security role."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from patient_search.db.health import DatabaseGate
from patient_search.settings import Settings

# The role every service query runs as. RLS is FORCEd on every table and this role has
# neither BYPASSRLS nor ownership, so it is bound by the policies even when the configured
# URL logs in as a superuser (SET ROLE drops the superuser's privileges for the session).
APP_ROLE = "patient_search_app"

AppConnection = AsyncConnection[dict[str, Any]]
# A connection attempt that keeps failing is given up after this long (see build_pool).
RECONNECT_TIMEOUT_S = 5.0


def conninfo(settings: Settings) -> str:
    """The libpq connection string for the configured database."""
    return str(settings.database_url)


async def _configure(conn: AppConnection) -> None:
    """Runs once per new physical connection: drop privileges to the RLS-bound role.

    Connections stay in autocommit mode: `clinic_transaction` sends its own BEGIN together
    with the clinic setting, saving the driver's separate BEGIN round trip.
    """
    await conn.set_autocommit(True)
    await conn.execute(f"SET ROLE {APP_ROLE}")


class ServicePool(AsyncConnectionPool[AppConnection]):
    """The service's pool: fails fast while the database is down (`db/health.py`) and reports
    how long each connection request waited (failed ones included)."""

    def __init__(
        self,
        *args: Any,
        gate: DatabaseGate,
        on_acquire: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self._on_acquire = on_acquire

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        await super().open(wait=False)
        self.gate.start(self)
        if wait:
            await self.wait(timeout)

    async def close(self, timeout: float = 5.0) -> None:
        await self.gate.stop()
        await super().close(timeout)

    async def getconn(self, timeout: float | None = None) -> AppConnection:
        started = time.perf_counter()
        try:
            return await self.gate.admit(functools.partial(super().getconn, timeout))
        except PoolTimeout:
            self.gate.suspect()  # busy, or down: the probe tells which
            raise
        finally:
            if self._on_acquire is not None:
                self._on_acquire(time.perf_counter() - started)

    async def putconn(self, conn: AppConnection) -> None:
        if conn.broken:
            self.gate.suspect()
        await super().putconn(conn)


def build_pool(
    settings: Settings, on_acquire: Callable[[float], None] | None = None
) -> ServicePool:
    """A closed pool sized and timed by the settings; the lifespan opens it.

    `on_acquire` receives the seconds every connection request waited (the metrics).
    """
    statement_timeout = settings.db_statement_timeout_ms
    gate = DatabaseGate(conninfo(settings), connect_timeout_s=settings.db_connect_timeout_s)
    return ServicePool(
        conninfo(settings),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_pool_acquire_timeout_s,
        max_idle=settings.db_pool_idle_timeout_s,
        # Each failed reconnection gives up after this long (psycopg_pool's default is 300 s of
        # doubling backoff); the gate refills the pool as soon as the server answers again.
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        kwargs={
            "row_factory": dict_row,
            "application_name": "patient-search",
            "connect_timeout": settings.db_connect_timeout_s,
            # Parallel workers cost more to start (~10 ms) than any of our indexed queries
            # takes; even a branch that never runs would launch them.
            "options": f"-c statement_timeout={statement_timeout}"
            " -c max_parallel_workers_per_gather=0",
        },
        configure=_configure,
        open=False,
        name="patient-search",
        gate=gate,
        on_acquire=on_acquire,
    )
