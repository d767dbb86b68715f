"""The PostgreSQL connection pool, every connection switched to the row-level-security role."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from patient_search.settings import Settings

# The role every service query runs as. RLS is FORCEd on every table and this role has
# neither BYPASSRLS nor ownership, so it is bound by the policies even when the configured
# URL logs in as a superuser (SET ROLE drops the superuser's privileges for the session).
APP_ROLE = "patient_search_app"

AppConnection = AsyncConnection[dict[str, Any]]


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


def build_pool(settings: Settings) -> AsyncConnectionPool[AppConnection]:
    """A closed pool sized and timed by the settings; the lifespan opens it."""
    statement_timeout = settings.db_statement_timeout_ms
    return AsyncConnectionPool(
        conninfo(settings),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_pool_acquire_timeout_s,
        max_idle=settings.db_pool_idle_timeout_s,
        kwargs={
            "row_factory": dict_row,
            "application_name": "patient-search",
            # Parallel workers cost more to start (~10 ms) than any of our indexed queries
            # takes; even a branch that never runs would launch them.
            "options": f"-c statement_timeout={statement_timeout}"
            " -c max_parallel_workers_per_gather=0",
        },
        configure=_configure,
        open=False,
        name="patient-search",
    )
