"""Many writers setting one MRN at once: one wins, every other gets the MRN-taken 409.

The writers meet inside PostgreSQL: a side session holds a table lock their INSERT or UPDATE
needs until all of them wait for it (after each has checked that the MRN is free), then lets
them go together (tests/hardening/test_concurrency.py).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id, patient_body
from tests.hardening.test_concurrency import _held, _together

WRITERS = 20
TABLE_LOCK = "LOCK TABLE patients IN SHARE ROW EXCLUSIVE MODE"


@pytest.fixture
async def wide_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose pool holds a connection for every writer at once."""
    app: FastAPI = create_app(make_settings(database_url, db_pool_max=WRITERS + 4))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


async def _registered(client: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[str]:
    ids = []
    for _ in range(n):
        created = await client.post("/v1/patients", json=patient_body(), headers=headers)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


@dataclass(frozen=True)
class Race:
    """A clinic, its writer's headers, the MRN raced for and the 409 of a plainly taken one."""

    clinic: str
    headers: dict[str, str]
    mrn: str
    taken: Any

    def one_winner(self, responses: list[httpx.Response], conn: psycopg.Connection[Any]) -> Any:
        """Asserts that one write won and every other got the plain 409; the winner's body."""
        statuses = Counter(r.status_code for r in responses)
        assert statuses[409] == len(responses) - 1, statuses
        assert all(r.json() == self.taken for r in responses if r.status_code == 409)
        winner = next(r.json() for r in responses if r.is_success)
        holders = conn.execute(
            "SELECT id::text FROM patients WHERE clinic_id = %s AND mrn = %s",
            (self.clinic, self.mrn),
        ).fetchall()
        assert holders == [(winner["id"],)]
        return winner


async def _race(client: httpx.AsyncClient) -> Race:
    clinic = new_clinic_id()
    headers = bearer(clinic)
    first, second = await _registered(client, headers, 2)
    taken = (await client.get(f"/v1/patients/{first}", headers=headers)).json()["mrn"]
    refused = await client.patch(f"/v1/patients/{second}", json={"mrn": taken}, headers=headers)
    assert refused.status_code == 409
    return Race(clinic, headers, f"RACE-{uuid.uuid4().hex[:8]}", refused.json())


async def test_twenty_patches_to_one_mrn_one_wins_the_rest_409(
    wide_client: httpx.AsyncClient, database_url: str, superuser_conn: psycopg.Connection[Any]
) -> None:
    race = await _race(wide_client)
    ids = await _registered(wide_client, race.headers, WRITERS)
    async with _held(database_url, TABLE_LOCK, ()) as release_when:
        responses = await _together(
            [
                wide_client.patch(
                    f"/v1/patients/{patient_id}",
                    json={"mrn": race.mrn, "first_name": f"Writer{n}"},
                    headers=race.headers,
                )
                for n, patient_id in enumerate(ids)
            ],
            release_when("UPDATE patients SET", WRITERS),
        )
    race.one_winner(responses, superuser_conn)
    # A loser's transaction is rolled back whole: no other field, no version, no audit entry.
    changed = superuser_conn.execute(
        "SELECT count(*) FROM patients WHERE id = ANY(%s::uuid[]) AND version > 1", (ids,)
    ).fetchone()
    updates = superuser_conn.execute(
        "SELECT count(*) FROM access_audit"
        " WHERE patient_id = ANY(%s::uuid[]) AND action = 'update'",
        (ids,),
    ).fetchone()
    assert changed == updates == (1,)


async def test_twenty_creates_with_one_mrn_one_wins_the_rest_409(
    wide_client: httpx.AsyncClient, database_url: str, superuser_conn: psycopg.Connection[Any]
) -> None:
    race = await _race(wide_client)
    async with _held(database_url, TABLE_LOCK, ()) as release_when:
        responses = await _together(
            [
                wide_client.post(
                    "/v1/patients", json=patient_body(mrn=race.mrn), headers=race.headers
                )
                for _ in range(WRITERS)
            ],
            release_when("INSERT INTO patients", WRITERS),
        )
    race.one_winner(responses, superuser_conn)
    assert Counter(r.status_code for r in responses)[201] == 1


async def test_creates_and_patches_racing_for_one_mrn_one_wins_the_rest_409(
    wide_client: httpx.AsyncClient, database_url: str, superuser_conn: psycopg.Connection[Any]
) -> None:
    race = await _race(wide_client)
    writes = []
    for patient_id in await _registered(wide_client, race.headers, WRITERS // 2):
        body = patient_body(mrn=race.mrn)
        writes.append(wide_client.post("/v1/patients", json=body, headers=race.headers))
        writes.append(
            wide_client.patch(
                f"/v1/patients/{patient_id}", json={"mrn": race.mrn}, headers=race.headers
            )
        )
    async with _held(database_url, TABLE_LOCK, ()) as release_when:
        # "patients" is in both statements: INSERT INTO patients, UPDATE patients SET.
        responses = await _together(writes, release_when("patients", WRITERS))
    race.one_winner(responses, superuser_conn)
