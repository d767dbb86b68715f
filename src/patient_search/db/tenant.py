"""Transactions scoped to one clinic: the only way service code reaches patient rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from patient_search.db.pool import AppConnection
from patient_search.db.statements import Params, Statement

Access = Literal["read", "write"]

_BEGIN = {
    "read": sql.SQL("BEGIN READ ONLY; SELECT set_config('app.clinic_id', {}, true)"),
    "write": sql.SQL("BEGIN; SELECT set_config('app.clinic_id', {}, true)"),
}
_CLINIC_SETTING = "SELECT set_config('app.clinic_id', %s, true)"


@asynccontextmanager
async def clinic_transaction(
    pool: AsyncConnectionPool[AppConnection], clinic_id: str, access: Access
) -> AsyncIterator[AppConnection]:
    """One transaction in which RLS sees `clinic_id`; read transactions are READ ONLY.

    BEGIN and the clinic setting travel in one round trip (pooled connections are in
    autocommit mode, so the driver adds no BEGIN of its own). The setting is
    transaction-local, so a pooled connection never carries one request's clinic into the
    next. Commits when the block succeeds, rolls back when it raises.
    """
    async with pool.connection() as conn:
        # A literal, not a parameter: the simple-query protocol that allows two statements in
        # one message takes none. Clinic ids are validated ([A-Za-z0-9_-]) and quoted anyway.
        await conn.execute(_BEGIN[access].format(sql.Literal(clinic_id)))
        try:
            yield conn
        except BaseException:
            await _rollback_quietly(conn)
            raise
        await conn.execute("COMMIT")


async def clinic_write_once(
    pool: AsyncConnectionPool[AppConnection],
    clinic_id: str,
    statement: Statement,
    params: Params,
    *,
    wait_for_flush: bool = True,
) -> None:
    """One write transaction in the clinic, pipelined: one round trip in all.

    For small appends that must not cost four round trips (BEGIN, clinic, statement, COMMIT).
    Every value is a bound parameter, never a literal in the SQL text, so a slow or failing
    statement's log line shows no identifiers. Without `wait_for_flush` the COMMIT returns
    before its WAL is on disk.
    """
    async with pool.connection() as conn:
        try:
            async with conn.pipeline():
                await conn.execute("BEGIN")
                if not wait_for_flush:
                    await conn.execute("SET LOCAL synchronous_commit = off")
                await conn.execute(_CLINIC_SETTING, (clinic_id,))
                await conn.execute(statement.sql, params)
                await conn.execute("COMMIT")
        except BaseException:
            # A failed statement aborts the rest of the pipeline and leaves the transaction open.
            await _rollback_quietly(conn)
            raise


async def _rollback_quietly(conn: AppConnection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except psycopg.Error:
        pass  # the connection is broken; the pool discards it
