"""The PostgreSQL connection pool, every connection switched to the row-level-security role."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from patient_search.db.health import DatabaseGate
from patient_search.db.logins import APP_ROLE, PRIVILEGED_LOGIN
from patient_search.settings import Settings

AppConnection = AsyncConnection[dict[str, Any]]
log = logging.getLogger(__name__)
# A connection attempt that keeps failing is given up after this long (see build_pool).
RECONNECT_TIMEOUT_S = 5.0


def conninfo(settings: Settings) -> str:
    """The libpq connection string for the configured database."""
    return str(settings.database_url)


class PrivilegedLogin(Exception):
    """The server's login is one row-level security does not bind (docs/operations.md)."""


async def _configure(conn: AppConnection, refuse_privileged: bool = False) -> None:
    """Runs once per new physical connection: drop privileges to the RLS-bound role.

    With `refuse_privileged` (the server outside dev), a connection whose login could leave
    that role for a privileged one is refused, so the pool never holds one: the check at
    `serve` is skipped when the database is down at start-up.

    Connections stay in autocommit mode: `clinic_transaction` sends its own BEGIN together
    with the clinic setting, saving the driver's separate BEGIN round trip.
    """
    await conn.set_autocommit(True)
    if refuse_privileged:
        row = await (await conn.execute(PRIVILEGED_LOGIN)).fetchone()
        if row and row["reason"]:
            log.error("database_login_refused", extra={"reason": row["reason"]})
            raise PrivilegedLogin(row["reason"])
    # SET ROLE drops a privileged login's rights for the session (dev, and operators' tools).
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
    settings: Settings,
    on_acquire: Callable[[float], None] | None = None,
    refuse_privileged: bool = False,
) -> ServicePool:
    """A closed pool sized and timed by the settings; the lifespan opens it.

    `on_acquire` receives the seconds every connection request waited (the metrics);
    `refuse_privileged` keeps privileged logins out of it (the server outside dev).
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
        configure=functools.partial(_configure, refuse_privileged=refuse_privileged),
        open=False,
        name="patient-search",
        gate=gate,
        on_acquire=on_acquire,
    )
