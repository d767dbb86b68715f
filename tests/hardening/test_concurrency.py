"""Concurrent writes: If-Match lets exactly one of many win, a taken MRN is taken once, and no
update is lost without it (docs/decisions/0003-patient-records-semantics.md).

The requests run at once through the app's pool. To make sure they really meet inside
PostgreSQL, not merely in the event loop, a superuser session holds a lock they all need until
every one of them is seen waiting for it in pg_stat_activity, then lets them go together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from tests.factories import bearer, new_clinic_id, patient_body
from tests.hardening.nasty import assert_clean_answer

# Below the test app's pool (10), so every request holds a connection of its own at once.
WRITERS = 8
WAIT_FOR_WAITERS_S = 15
# Held by a side connection so the racing requests queue up behind it on the same row.
PATIENT_ROW_LOCK = "SELECT 1 FROM patients WHERE id = %s FOR UPDATE"


async def _waiting(conn: psycopg.AsyncConnection[Any], statement: str) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query ILIKE %s",
            (f"%{statement}%",),
        )
    ).fetchone()
    assert row is not None
    return int(row[0])


@asynccontextmanager
async def _held(
    database_url: str, lock_sql: str, params: tuple[object, ...]
) -> AsyncIterator[Callable[[str, int], Awaitable[None]]]:
    """A transaction holding a lock; yields `release_when(statement, n)`."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watcher:
        async with await psycopg.AsyncConnection.connect(database_url) as holder:
            await holder.execute(lock_sql, params)

            async def release_when(statement: str, waiters: int) -> None:
                deadline = asyncio.get_running_loop().time() + WAIT_FOR_WAITERS_S
                while await _waiting(watcher, statement) < waiters:
                    if asyncio.get_running_loop().time() > deadline:
                        await holder.rollback()
                        pytest.fail(f"fewer than {waiters} requests reached the database at once")
                    await asyncio.sleep(0.02)
                await holder.rollback()

            yield release_when
            await holder.rollback()


async def _together(
    requests: list[Awaitable[httpx.Response]], release: Awaitable[None]
) -> list[httpx.Response]:
    *responses, _ = await asyncio.gather(*requests, release)
    for response in responses:
        assert_clean_answer(response)
    return list(responses)


async def test_one_if_match_many_writers_exactly_one_wins(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    create_patient: Callable[..., Any],
    database_url: str,
) -> None:
    patient = await create_patient(auth)
    url = f"/v1/patients/{patient['id']}"
    async with _held(database_url, PATIENT_ROW_LOCK, (patient["id"],)) as release_when:
        responses = await _together(
            [
                client.patch(
                    url, json={"first_name": f"Writer{n}"}, headers={**auth, "If-Match": '"1"'}
                )
                for n in range(WRITERS)
            ],
            release_when("UPDATE patients SET", WRITERS),
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 412: WRITERS - 1}
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.headers["etag"] == '"2"'
    loser = next(r for r in responses if r.status_code == 412)
    assert "current version 2" in loser.json()["detail"]
    final = (await client.get(url, headers=auth)).json()
    assert final["version"] == 2
    assert final["first_name"] == winner.json()["first_name"]


async def test_without_if_match_no_update_is_lost(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    create_patient: Callable[..., Any],
    database_url: str,
) -> None:
    """Different fields at once: every change lands, each write counted in the version."""
    patient = await create_patient(auth)
    url = f"/v1/patients/{patient['id']}"
    changes: list[dict[str, Any]] = [
        {"first_name": "Augusta"},
        {"middle_name": "Ada"},
        {"last_name": "King"},
        {"email": "countess@example.org"},
        {"date_of_birth": "1915-12-10"},
        {"sex": "other"},
        {"status": "deceased"},
        {"phones": ["+44 20 7946 0000"]},
    ][:WRITERS]
    async with _held(database_url, PATIENT_ROW_LOCK, (patient["id"],)) as release_when:
        responses = await _together(
            [client.patch(url, json=change, headers=auth) for change in changes],
            release_when("UPDATE patients SET", len(changes)),
        )
    assert [r.status_code for r in responses] == [200] * len(changes)
    final = (await client.get(url, headers=auth)).json()
    assert final["version"] == 1 + len(changes)
    for change in changes:
        for field, value in change.items():
            if field == "phones":
                assert final["phones"] == ["+442079460000"]
            else:
                assert final[field] == value, field


async def test_without_if_match_the_same_field_ends_as_one_whole_write(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    create_patient: Callable[..., Any],
    database_url: str,
) -> None:
    """Same field at once: the last commit wins, whole; lists are never a mix of two writes."""
    patient = await create_patient(auth)
    url = f"/v1/patients/{patient['id']}"
    lists = [[f"415-555-{n:02d}{m:02d}" for m in range(3)] for n in range(WRITERS)]
    async with _held(database_url, PATIENT_ROW_LOCK, (patient["id"],)) as release_when:
        responses = await _together(
            [
                client.patch(url, json={"phones": phones, "last_name": f"L{n}"}, headers=auth)
                for n, phones in enumerate(lists)
            ],
            release_when("UPDATE patients SET", WRITERS),
        )
    assert [r.status_code for r in responses] == [200] * WRITERS
    final = (await client.get(url, headers=auth)).json()
    assert final["version"] == 1 + WRITERS
    written = int(final["last_name"][1:])
    # Phones and name come from the same request: the writes were serialised, not interleaved.
    assert final["phones"] == [f"+1415555{written:02d}{m:02d}" for m in range(3)]
    # The last to commit is the one with the highest version.
    last = max(responses, key=lambda r: int(r.json()["version"]))
    assert last.json()["last_name"] == final["last_name"]


async def test_one_mrn_many_creators_one_201_no_duplicates(
    client: httpx.AsyncClient, database_url: str, superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    headers = bearer(clinic)
    # The clinic exists first, so that every creator races on the MRN, not on the clinic row.
    first = await client.post("/v1/patients", json=patient_body(), headers=headers)
    assert first.status_code == 201
    mrn = f"RACE-{uuid.uuid4().hex[:8]}"
    async with _held(database_url, "LOCK TABLE patients IN SHARE ROW EXCLUSIVE MODE", ()) as (
        release_when
    ):
        responses = await _together(
            [
                client.post(
                    "/v1/patients",
                    json=patient_body(mrn=mrn, first_name=f"Creator{n}"),
                    headers=headers,
                )
                for n in range(WRITERS)
            ],
            release_when("INSERT INTO patients", WRITERS),
        )
    assert Counter(r.status_code for r in responses) == {201: 1, 409: WRITERS - 1}
    rows = superuser_conn.execute(
        "SELECT count(*) FROM patients WHERE clinic_id = %s AND mrn = %s", (clinic, mrn)
    ).fetchone()
    assert rows == (1,)
    orphans = superuser_conn.execute(
        "SELECT count(*) FROM patient_phones ph WHERE clinic_id = %s AND NOT EXISTS"
        " (SELECT 1 FROM patients p WHERE p.clinic_id = ph.clinic_id AND p.id = ph.patient_id)",
        (clinic,),
    ).fetchone()
    assert orphans == (0,)


async def test_creators_of_new_clinics_and_shared_new_names_all_succeed(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Distinct MRNs whose new name terms overlap, in a clinic not yet known: all 201.

    The first creator inserts the clinic; the others wait on that row, so all are counted.
    """
    clinic = new_clinic_id()
    headers = bearer(clinic)
    names = ["Zq" + "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:6]) for _ in "1234"]
    async with _held(database_url, "LOCK TABLE patients IN SHARE ROW EXCLUSIVE MODE", ()) as (
        release_when
    ):
        responses = await _together(
            [
                client.post(
                    "/v1/patients",
                    # Each writer adds the same new terms to the vocabulary, in another order.
                    json=patient_body(
                        first_name=" ".join(names[n % 4 :] + names[: n % 4]),
                        last_name=" ".join(reversed(names[n % 4 :] + names[: n % 4])),
                    ),
                    headers=headers,
                )
                for n in range(WRITERS)
            ],
            release_when("INSERT INTO", WRITERS),
        )
    assert [r.status_code for r in responses] == [201] * WRITERS, [r.text for r in responses]
    found = await client.get("/v1/patients", params={"q": names[0], "limit": 100}, headers=headers)
    assert found.json()["total"] == WRITERS


async def test_archive_racing_updates_never_fails(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    create_patient: Callable[..., Any],
    database_url: str,
) -> None:
    patient = await create_patient(auth)
    url = f"/v1/patients/{patient['id']}"
    async with _held(database_url, PATIENT_ROW_LOCK, (patient["id"],)) as release_when:
        responses = await _together(
            [client.delete(url, headers=auth)]
            + [
                client.patch(url, json={"first_name": f"Late{n}"}, headers=auth)
                for n in range(WRITERS - 1)
            ],
            release_when("UPDATE patients SET", WRITERS),
        )
    assert responses[0].status_code == 204
    # Updates that committed before the archive succeeded; the rest find no live patient.
    assert {r.status_code for r in responses[1:]} <= {200, 404}
    assert (await client.get(url, headers=auth)).status_code == 404
