"""Slow statements: the pool runs dry (503s), statement_timeout frees it, service recovers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from patient_search.db.tenant import clinic_transaction
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id, patient_body
from tests.faults.conftest import report

STATEMENT_TIMEOUT_S = 1.0
ACQUIRE_TIMEOUT_S = 0.3


@pytest.fixture
async def small_pool_app(database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(
        make_settings(
            database_url,
            cache_enabled=False,
            db_pool_min=2,
            db_pool_max=2,
            db_pool_acquire_timeout_s=ACQUIRE_TIMEOUT_S,
            db_statement_timeout_ms=int(STATEMENT_TIMEOUT_S * 1000),
        )
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(small_pool_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(small_pool_app) as client:
        yield client


async def test_a_runaway_statement_is_cancelled_and_its_connection_reused(
    small_pool_app: FastAPI,
) -> None:
    pool = small_pool_app.state.services.pool
    clinic = new_clinic_id()
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        async with clinic_transaction(pool, clinic, "read") as conn:
            await conn.execute("SELECT pg_sleep(30)")
    cancelled_after = time.monotonic() - started
    assert STATEMENT_TIMEOUT_S <= cancelled_after < STATEMENT_TIMEOUT_S + 2
    # The connection came back healthy: both of the pool's connections serve at once.
    async with clinic_transaction(pool, clinic, "read") as first:
        async with clinic_transaction(pool, clinic, "read") as second:
            await first.execute("SELECT 1")
            await second.execute("SELECT 1")
    assert pool.get_stats().get("connections_lost", 0) == 0
    assert pool.gate.state == "ok"


async def test_statements_stuck_on_a_lock_exhaust_the_pool_then_it_recovers(
    http: httpx.AsyncClient,
    small_pool_app: FastAPI,
    superuser_conn: psycopg.Connection[Any],
) -> None:
    headers = bearer(clinic := new_clinic_id())
    created = await http.post("/v1/patients", json=patient_body(), headers=headers)
    assert created.status_code == 201
    patient_id = uuid.UUID(created.json()["id"])
    path = f"/v1/patients/{patient_id}"

    with superuser_conn.transaction():
        # Another session holds the row: each PATCH waits on it, holding a pooled connection.
        superuser_conn.execute(
            "SELECT 1 FROM patients WHERE clinic_id = %s AND id = %s FOR UPDATE",
            [clinic, patient_id],
        )
        stuck = [
            asyncio.create_task(http.patch(path, json={"status": "inactive"}, headers=headers))
            for _ in range(2)
        ]
        pool = small_pool_app.state.services.pool
        deadline = time.monotonic() + 5
        while pool.get_stats().get("pool_available", 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        asked = time.monotonic()
        busy = await http.get(path, headers=headers)
        busy_s = time.monotonic() - asked
        writes = await asyncio.gather(*stuck)
        freed_s = time.monotonic() - asked

    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"] == "application/problem+json"
    assert busy_s < ACQUIRE_TIMEOUT_S + 1
    # statement_timeout cancelled the waiting statements: a 503 of their own, not a hang.
    assert [w.status_code for w in writes] == [503, 503]
    assert all(w.headers["retry-after"] == "1" for w in writes)
    assert "cancelled" in writes[0].json()["detail"]
    assert freed_s < STATEMENT_TIMEOUT_S + 2
    # Recovery: the same pool serves reads and writes again; exhaustion was not an outage.
    assert (await http.get(path, headers=headers)).status_code == 200
    patched = await http.patch(path, json={"status": "inactive"}, headers=headers)
    assert patched.status_code == 200
    assert small_pool_app.state.services.pool.gate.state == "ok"
    report(
        "pool exhausted by statements stuck on a lock (pool 2, acquire timeout 0.3 s, "
        f"statement_timeout 1 s): 1 fault; 3 requests failed (1 x 503 busy in {busy_s:.2f} s, "
        f"2 x 503 cancelled after {freed_s:.2f} s), then 2 of 2 succeeded"
    )
