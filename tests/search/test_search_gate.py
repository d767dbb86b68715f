"""One clinic's flood of searches cannot take the pool from the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from patient_search.errors import SearchesBusy
from patient_search.search.gate import ClinicGate
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id


async def test_a_clinic_past_its_slots_waits_then_is_refused_while_others_pass() -> None:
    gate = ClinicGate(limit=2, wait_s=0.05)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold(clinic: str) -> None:
        async with gate.slot(clinic):
            held.set()
            await release.wait()

    holders = [asyncio.create_task(hold("flooder")) for _ in range(2)]
    await held.wait()
    await asyncio.sleep(0)
    with pytest.raises(SearchesBusy):
        async with gate.slot("flooder"):
            pass
    async with gate.slot("quiet"):  # another clinic never waits behind the flood
        pass
    release.set()
    await asyncio.gather(*holders)
    async with gate.slot("flooder"):  # slots free again once the searches end
        pass
    assert gate._clinics == {}  # nothing kept for clinics with no search in flight


@pytest.fixture
async def gated_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url, search_concurrency_per_clinic=1, search_queue_wait_ms=0, cache_enabled=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def test_a_busy_clinic_gets_503_with_retry_after_and_others_are_served(
    gated_app: FastAPI,
) -> None:
    flooder, quiet = new_clinic_id(), new_clinic_id()
    gate = gated_app.state.services.search_gate
    async with asgi_client(gated_app) as client, gate.slot(flooder):
        # The flooding clinic's one slot is taken by a search in flight.
        busy = await client.get("/v1/patients", params={"q": "smith"}, headers=bearer(flooder))
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert busy.headers["content-type"] == "application/problem+json"
        assert "this clinic" in busy.json()["detail"]
        served = await client.get("/v1/patients", params={"q": "smith"}, headers=bearer(quiet))
        assert served.status_code == 200


async def test_one_users_burst_is_no_larger_than_the_pool(database_url: str) -> None:
    settings = make_settings(
        database_url, search_rate_per_minute=60, search_rate_burst=50, db_pool_max=3
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        alice = bearer(new_clinic_id(), user="alice")
        statuses = [
            (await client.get("/v1/patients", params={"q": "smith"}, headers=alice)).status_code
            for _ in range(5)
        ]
    assert statuses == [200, 200, 200, 429, 429]


async def test_the_duplicate_check_takes_the_same_slots(gated_app: FastAPI) -> None:
    flooder = new_clinic_id()
    body = {"first_name": "Ana", "last_name": "Smith", "date_of_birth": "1970-01-02"}
    gate = gated_app.state.services.search_gate
    async with asgi_client(gated_app) as client, gate.slot(flooder):
        busy = await client.post("/v1/patients/match", json=body, headers=bearer(flooder))
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
    async with asgi_client(gated_app) as client:
        free = await client.post("/v1/patients/match", json=body, headers=bearer(flooder))
        assert free.status_code == 200
