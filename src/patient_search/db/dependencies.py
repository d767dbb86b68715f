"""Request-scoped clinic transactions: committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request

from patient_search.auth.dependencies import Reader, Writer, authenticate
from patient_search.auth.tokens import READ_SCOPE, Principal
from patient_search.db.statements import StatementRunner
from patient_search.db.tenant import clinic_transaction
from patient_search.state import AppState, State


async def read_transaction(principal: Reader, state: State) -> AsyncIterator[StatementRunner]:
    """A READ ONLY transaction in the caller's clinic."""
    async with clinic_transaction(state.pool, principal.clinic_id, "read") as conn:
        yield StatementRunner(conn, state.query_observer)


async def write_transaction(principal: Writer, state: State) -> AsyncIterator[StatementRunner]:
    """A read-write transaction in the caller's clinic; after-commit actions run after it."""
    async with clinic_transaction(state.pool, principal.clinic_id, "write") as conn:
        runner = StatementRunner(conn, state.query_observer)
        yield runner
    # Committed: now the caches may learn of the write, before the client does.
    await runner.run_after_commit()


class ClinicReader:
    """Opens READ ONLY clinic transactions on demand: a cache hit takes no connection.

    Carries the caller and the worker's state too, so a read route needs this dependency
    and no other (each dependency FastAPI solves costs CPU on the hottest routes)."""

    def __init__(self, state: AppState, principal: Principal) -> None:
        self.state = state
        self.principal = principal
        self.clinic_id = principal.clinic_id

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StatementRunner]:
        async with clinic_transaction(self.state.pool, self.clinic_id, "read") as conn:
            yield StatementRunner(conn, self.state.query_observer)


async def clinic_reader(request: Request) -> ClinicReader:
    """The caller (holding the read scope) and its clinic's on-demand transactions.

    Authenticates by itself rather than through `Reader`: one dependency node instead of
    three on the hottest routes (decision 0012); they declare the bearer scheme with
    `BEARER_REQUIRED` for the OpenAPI document."""
    return ClinicReader(request.app.state.services, authenticate(request, READ_SCOPE))


# scope="function": the transaction commits before the response leaves, so a client that
# has its 201 can never read data that is not yet committed.
ReadDb = Annotated[StatementRunner, Depends(read_transaction, scope="function")]
WriteDb = Annotated[StatementRunner, Depends(write_transaction, scope="function")]
OnDemandReadDb = Annotated[ClinicReader, Depends(clinic_reader)]
