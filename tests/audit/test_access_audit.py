"""The access audit: every view and write recorded, append-only, listed by the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from patient_search import cli
from patient_search.audit.repository import Access
from patient_search.audit.trail import AccessTrail
from patient_search.db.statements import NullObserver
from patient_search.settings import Settings
from tests.audit.trail_rows import entries, with_request_id
from tests.factories import bearer, new_clinic_id


async def test_every_view_and_write_is_recorded_with_actor_and_request_id(
    client: httpx.AsyncClient,
    clinic: str,
    create_patient: Callable[..., Any],
    superuser_conn: psycopg.Connection[Any],
) -> None:
    alice, bob = bearer(clinic, user="alice"), bearer(clinic, user="bob")
    created = await create_patient({**alice, **with_request_id("r-create")})
    path = f"/v1/patients/{created['id']}"
    # Two views: the second is a cache hit, which never reaches the database, and is audited.
    assert (
        await client.get(path, headers={**bob, **with_request_id("r-view-1")})
    ).status_code == 200
    assert (
        await client.get(path, headers={**bob, **with_request_id("r-view-2")})
    ).status_code == 200
    summary = await client.get(f"{path}/summary", headers={**bob, **with_request_id("r-summary")})
    assert summary.status_code == 200
    patch = {"status": "inactive"}
    patched = await client.patch(path, json=patch, headers={**alice, **with_request_id("r-update")})
    assert patched.status_code == 200
    assert (
        await client.delete(path, headers={**alice, **with_request_id("r-archive")})
    ).status_code == 204
    assert entries(superuser_conn, clinic, created["id"]) == [
        ("create", "alice", "r-create"),
        ("view", "bob", "r-view-1"),
        ("view", "bob", "r-view-2"),
        ("summary", "bob", "r-summary"),
        ("update", "alice", "r-update"),
        ("archive", "alice", "r-archive"),
    ]


async def test_refused_and_failed_requests_record_nothing(
    client: httpx.AsyncClient,
    clinic: str,
    create_patient: Callable[..., Any],
    superuser_conn: psycopg.Connection[Any],
) -> None:
    created = await create_patient(bearer(clinic))
    path = f"/v1/patients/{created['id']}"
    # Another clinic's user sees a 404; a stale If-Match changes nothing: neither is an access.
    assert (await client.get(path, headers=bearer(new_clinic_id()))).status_code == 404
    stale = {**bearer(clinic), "If-Match": '"99"'}
    assert (await client.patch(path, json={"status": "inactive"}, headers=stale)).status_code == 412
    unknown = f"/v1/patients/{uuid.uuid4()}"
    assert (await client.get(unknown, headers=bearer(clinic))).status_code == 404
    assert [a for a, _, _ in entries(superuser_conn, clinic, created["id"])] == ["create"]


async def test_a_request_without_an_id_gets_one_and_it_is_the_one_recorded(
    client: httpx.AsyncClient,
    clinic: str,
    create_patient: Callable[..., Any],
    superuser_conn: psycopg.Connection[Any],
) -> None:
    created = await create_patient(bearer(clinic))
    response = await client.get(f"/v1/patients/{created['id']}", headers=bearer(clinic))
    [_, (action, _, request_id)] = entries(superuser_conn, clinic, created["id"])
    assert action == "view"
    assert request_id == response.headers["x-request-id"]


# Every way of changing or removing what the trail holds.
REWRITES = [
    "UPDATE access_audit SET actor = 'mallory'",
    "DELETE FROM access_audit",
    "TRUNCATE access_audit",
]


@pytest.mark.parametrize("statement", REWRITES)
def test_the_service_role_can_neither_change_nor_removeentries(
    superuser_conn: psycopg.Connection[Any], statement: str
) -> None:
    with superuser_conn.transaction(force_rollback=True):
        superuser_conn.execute("SET LOCAL ROLE patient_search_app")
        superuser_conn.execute("SELECT set_config('app.clinic_id', 'c-any', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            superuser_conn.execute(statement)


@pytest.mark.parametrize("statement", REWRITES)
def test_even_the_owner_cannot_rewrite_the_trail(
    superuser_conn: psycopg.Connection[Any], statement: str
) -> None:
    with superuser_conn.transaction(force_rollback=True):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            superuser_conn.execute(statement)


def test_entries_are_clinic_scoped_for_the_service_role(
    superuser_conn: psycopg.Connection[Any],
) -> None:
    with superuser_conn.transaction(force_rollback=True):
        superuser_conn.execute("SET LOCAL ROLE patient_search_app")
        superuser_conn.execute("SELECT set_config('app.clinic_id', 'c-mine', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            superuser_conn.execute(
                "INSERT INTO access_audit (clinic_id, patient_id, actor, action)"
                " VALUES ('c-other', %s, 'mallory', 'view')",
                [uuid.uuid4()],
            )


@pytest.mark.parametrize("durable", [False, True])
async def test_closing_the_trail_writes_what_is_queued(
    app: FastAPI, superuser_conn: psycopg.Connection[Any], durable: bool
) -> None:
    clinic, patient_id = new_clinic_id(), uuid.uuid4()
    trail = AccessTrail(app.state.services.pool, NullObserver(), durable=durable)
    trail.start()
    views = [
        asyncio.create_task(trail.record(Access(clinic, patient_id, f"u{n}", "view", None)))
        for n in range(50)
    ]
    await asyncio.sleep(0)  # queued, not yet written
    await trail.close()
    await asyncio.gather(*views)
    assert len(entries(superuser_conn, clinic, patient_id)) == 50
    # After close, a straggler is written directly rather than lost.
    await trail.record(Access(clinic, patient_id, "late", "view", None))
    assert len(entries(superuser_conn, clinic, patient_id)) == 51


async def test_the_cli_lists_who_accessed_a_patient_and_nothing_of_the_record(
    client: httpx.AsyncClient,
    clinic: str,
    create_patient: Callable[..., Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    created = await create_patient(
        {**bearer(clinic, user="carol"), **with_request_id("r-cli-create")}
    )
    path = f"/v1/patients/{created['id']}"
    await client.get(path, headers={**bearer(clinic, user="dave"), **with_request_id("r-cli-view")})

    for extra in ([], ["--clinic", clinic]):
        assert await asyncio.to_thread(cli.main, ["audit", "--patient", created["id"], *extra]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].split() == ["time", "(UTC)", "actor", "action", "request", "id"]
        assert lines[1].split()[1:] == ["carol", "create", "r-cli-create"]
        assert lines[2].split()[1:] == ["dave", "view", "r-cli-view"]
        assert lines[3] == f"audit: 2 entries for patient {created['id']} in clinic {clinic}"
        for phi in (created["last_name"], created["mrn"], created["email"], created["first_name"]):
            assert str(phi) not in out

    other = str(uuid.uuid4())
    assert await asyncio.to_thread(cli.main, ["audit", "--patient", other]) == 0
    assert "no entries" in capsys.readouterr().out
