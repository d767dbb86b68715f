"""Transactions scoped to one clinic: the only way service code reaches patient rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from psycopg_pool import AsyncConnectionPool

from patient_search.db.pool import AppConnection

Access = Literal["read", "write"]


@asynccontextmanager
async def clinic_transaction(
    pool: AsyncConnectionPool[AppConnection], clinic_id: str, access: Access
) -> AsyncIterator[AppConnection]:
    """One transaction in which RLS sees `clinic_id`; read transactions are READ ONLY.

    The setting is transaction-local (`set_config(..., true)`), so a pooled connection
    never carries one request's clinic into the next. Commits when the block succeeds.
    """
    async with pool.connection() as conn, conn.transaction():
        read_only = "on" if access == "read" else "off"
        await conn.execute(
            "SELECT set_config('app.clinic_id', %s, true),"
            " set_config('transaction_read_only', %s, true)",
            (clinic_id, read_only),
        )
        yield conn
