"""Identifiers travel as bound parameters, never inside SQL text a server log could print."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql

from patient_search.audit.repository import Access
from patient_search.audit.trail import AccessTrail
from patient_search.db.statements import NullObserver
from tests.audit.trail_rows import entries
from tests.factories import new_clinic_id


@pytest.fixture
def sent_sql(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL text of every statement this process's async connections send."""
    texts: list[str] = []
    execute = psycopg.AsyncConnection.execute

    async def recording(
        self: psycopg.AsyncConnection[Any], query: Any, *args: Any, **kw: Any
    ) -> Any:
        texts.append(query.as_string(self) if isinstance(query, sql.Composable) else str(query))
        return await execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", recording)
    return texts


@pytest.mark.parametrize("durable", [False, True])
async def test_the_trail_sends_who_viewed_whom_as_parameters(
    app: FastAPI,
    superuser_conn: psycopg.Connection[Any],
    sent_sql: list[str],
    durable: bool,
) -> None:
    clinic, patient_id = new_clinic_id(), uuid.uuid4()
    trail = AccessTrail(app.state.services.pool, NullObserver(), durable=durable)
    trail.start()
    views = [
        asyncio.create_task(trail.record(Access(clinic, patient_id, f"user-{n}", "view", "r-9")))
        for n in range(5)
    ]
    await asyncio.gather(*views)
    await trail.close()
    assert len(entries(superuser_conn, clinic, patient_id)) == 5
    assert any("access_audit" in text for text in sent_sql)  # the trail's INSERT was seen
    for text in sent_sql:
        assert str(patient_id) not in text
        assert "user-" not in text and clinic not in text
