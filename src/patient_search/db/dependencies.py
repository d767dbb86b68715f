"""Request-scoped clinic transactions: committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends

from patient_search.auth.dependencies import Reader, Writer
from patient_search.db.statements import StatementRunner
from patient_search.db.tenant import clinic_transaction
from patient_search.state import State


async def read_transaction(principal: Reader, state: State) -> AsyncIterator[StatementRunner]:
    """A READ ONLY transaction in the caller's clinic."""
    async with clinic_transaction(state.pool, principal.clinic_id, "read") as conn:
        yield StatementRunner(conn, state.query_observer)


async def write_transaction(principal: Writer, state: State) -> AsyncIterator[StatementRunner]:
    """A read-write transaction in the caller's clinic."""
    async with clinic_transaction(state.pool, principal.clinic_id, "write") as conn:
        yield StatementRunner(conn, state.query_observer)


# scope="function": the transaction commits before the response leaves, so a client that
# has its 201 can never read data that is not yet committed.
ReadDb = Annotated[StatementRunner, Depends(read_transaction, scope="function")]
WriteDb = Annotated[StatementRunner, Depends(write_transaction, scope="function")]
