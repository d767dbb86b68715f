"""Entries in the audit journal that the service did not write never reach `access_audit`.

Each test plays someone who can reach Redis but does not hold the service secret: they
XADD entries to the journal's stream (in the format of an older release, or a genuine one
altered). A genuine entry added beside them shows the drain ran past them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
import pytest
import redis
from fastapi import FastAPI

from patient_search.app import create_app
from patient_search.audit.journal import (
    FIELD,
    GROUP,
    STREAM,
    AuditJournal,
    journal_key,
)
from patient_search.audit.repository import Access
from patient_search.cache.keys import PREFIX
from patient_search.signing import MAC_CHARS
from tests.audit.trail_rows import entries
from tests.conftest import asgi_client, make_settings
from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.observability.helpers import scraped
from tests.private_servers import PrivateRedis

DRAIN_WAIT_S = 10.0
REJECTED = "patient_search_audit_journal_rejected_total"


@pytest.fixture
async def journal_app(database_url: str, private_redis: PrivateRedis) -> AsyncIterator[FastAPI]:
    """The service on a Redis of this test's own, its journal on."""
    app = create_app(make_settings(database_url, redis_url=private_redis.url))
    async with app.router.lifespan_context(app):
        journal: AuditJournal = app.state.services.audit_journal
        deadline = time.monotonic() + DRAIN_WAIT_S
        while journal.state != "on" and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert journal.state == "on"
        yield app


@pytest.fixture
def attacker(private_redis: PrivateRedis) -> redis.Redis:
    return redis.Redis.from_url(private_redis.url)


async def a_patient(app: FastAPI, clinic: str) -> uuid.UUID:
    """A patient of `clinic` (so the clinic exists, as a forger would pick one)."""
    async with asgi_client(app) as http:
        response = await http.post("/v1/patients", json=patient_body(), headers=bearer(clinic))
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def genuine(app: FastAPI, access: Access) -> bytes:
    """The entry the service itself writes for `access` on a journaled cache hit."""
    slip = app.state.services.audit_journal.slip(access)
    assert slip is not None
    entry: bytes = slip.entry
    return entry


def old_release_entry(access: Access) -> bytes:
    """An entry in the format before entries were signed (anyone can write it)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    at = (access.at - epoch) // dt.timedelta(microseconds=1)
    fields = [access.clinic_id, str(access.patient_id), access.actor, access.action]
    return orjson.dumps([*fields, access.request_id, at])


def request_ids(conn: psycopg.Connection[Any], clinic: str) -> set[str]:
    rows = conn.execute(
        "SELECT request_id FROM access_audit WHERE clinic_id = %s", [clinic]
    ).fetchall()
    return {request_id for (request_id,) in rows}


async def drained_with(
    conn: psycopg.Connection[Any], attacker: redis.Redis, clinic: str, control: str
) -> set[str]:
    """The clinic's request ids once the control entry is in and the stream is empty."""
    deadline = time.monotonic() + DRAIN_WAIT_S
    while True:
        found = request_ids(conn, clinic)
        empty = attacker.xlen(STREAM) == 0 and attacker.xpending(STREAM, GROUP)["pending"] == 0
        if (control in found and empty) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


async def rejected(app: FastAPI, reason: str) -> float:
    """The journal's count of rejected entries for `reason`, as /metrics shows it."""
    async with asgi_client(app) as http:
        value = scraped((await http.get("/metrics")).text, REJECTED, reason=reason)
    assert value is not None
    return value


def view(clinic: str, patient_id: uuid.UUID, request_id: str, **fields: Any) -> Access:
    return Access(clinic, patient_id, fields.pop("actor", "mallory"), "view", request_id, **fields)


async def test_a_forged_entry_of_any_clinic_and_date_is_rejected_and_counted(
    journal_app: FastAPI, attacker: redis.Redis, superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic = new_clinic_id()
    patient_id = await a_patient(journal_app, clinic)
    back_then = dt.datetime(2024, 2, 29, 3, 14, tzinfo=dt.UTC)
    before = await rejected(journal_app, "signature")
    for request_id, at in (("r-forged-now", dt.datetime.now(dt.UTC)), ("r-forged-then", back_then)):
        attacker.xadd(
            STREAM, {FIELD: old_release_entry(view(clinic, patient_id, request_id, at=at))}
        )
    attacker.xadd(STREAM, {FIELD: genuine(journal_app, view(clinic, patient_id, "r-genuine"))})

    found = await drained_with(superuser_conn, attacker, clinic, "r-genuine")
    assert "r-genuine" in found
    assert not found & {"r-forged-now", "r-forged-then"}
    journal: AuditJournal = journal_app.state.services.audit_journal
    assert journal.rejected["signature"] == 2
    assert await rejected(journal_app, "signature") == before + 2


async def test_a_genuine_entry_altered_is_rejected(
    journal_app: FastAPI, attacker: redis.Redis, superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic, other = new_clinic_id(), new_clinic_id()
    patient_id = await a_patient(journal_app, clinic)
    await a_patient(journal_app, other)
    entry = genuine(journal_app, view(clinic, patient_id, "r-altered", actor="alice"))
    for altered in (
        entry.replace(b"alice", b"bobby"),
        entry.replace(clinic.encode(), other.encode()),
        entry[:-1] + b"7]" if entry.endswith(b"]") else entry + b"0",
    ):
        attacker.xadd(STREAM, {FIELD: altered})
    attacker.xadd(STREAM, {FIELD: genuine(journal_app, view(clinic, patient_id, "r-genuine"))})

    found = await drained_with(superuser_conn, attacker, clinic, "r-genuine")
    assert "r-genuine" in found and "r-altered" not in found
    assert "r-altered" not in request_ids(superuser_conn, other)
    assert journal_app.state.services.audit_journal.rejected["signature"] == 3


@pytest.mark.parametrize(
    "offset", [dt.timedelta(days=-30), dt.timedelta(hours=1)], ids=["far-past", "future"]
)
async def test_an_entry_timed_far_from_the_drain_is_rejected(
    journal_app: FastAPI,
    attacker: redis.Redis,
    superuser_conn: psycopg.Connection[Any],
    offset: dt.timedelta,
) -> None:
    """Even signed: a far-past or future time is no view this journal carried."""
    clinic = new_clinic_id()
    patient_id = await a_patient(journal_app, clinic)
    at = dt.datetime.now(dt.UTC) + offset
    before = await rejected(journal_app, "time")
    attacker.xadd(STREAM, {FIELD: genuine(journal_app, view(clinic, patient_id, "r-odd", at=at))})
    attacker.xadd(STREAM, {FIELD: genuine(journal_app, view(clinic, patient_id, "r-genuine"))})

    found = await drained_with(superuser_conn, attacker, clinic, "r-genuine")
    assert "r-genuine" in found and "r-odd" not in found
    assert journal_app.state.services.audit_journal.rejected["time"] == 1
    assert await rejected(journal_app, "time") == before + 1


async def test_a_signed_entry_that_is_no_access_is_rejected_as_unreadable(
    journal_app: FastAPI, attacker: redis.Redis, superuser_conn: psycopg.Connection[Any]
) -> None:
    """Signed under the secret, yet not an entry's fields: a bug, counted apart from forgeries."""
    clinic = new_clinic_id()
    patient_id = await a_patient(journal_app, clinic)
    fields = orjson.dumps([clinic, str(patient_id), "mallory", "peek", "r-odd", 0])
    mac = hmac.digest(journal_key(TEST_SECRET), fields, "sha256")[: MAC_CHARS // 2].hex()
    before = await rejected(journal_app, "unreadable")
    attacker.xadd(STREAM, {FIELD: mac.encode() + fields})
    attacker.xadd(STREAM, {FIELD: genuine(journal_app, view(clinic, patient_id, "r-genuine"))})

    found = await drained_with(superuser_conn, attacker, clinic, "r-genuine")
    assert "r-genuine" in found and "r-odd" not in found
    assert journal_app.state.services.audit_journal.rejected["unreadable"] == 1
    assert await rejected(journal_app, "unreadable") == before + 1


@pytest.mark.parametrize("kind", ["profile", "summary"])
async def test_a_view_of_a_forged_cache_value_is_audited_once(
    journal_app: FastAPI,
    attacker: redis.Redis,
    superuser_conn: psycopg.Connection[Any],
    kind: str,
) -> None:
    """The cache read journals before it can check the value: one entry, not one per read."""
    clinic = new_clinic_id()
    headers = bearer(clinic)
    patient_id = await a_patient(journal_app, clinic)
    key = f"{PREFIX}{{{clinic}}}:{kind}:{patient_id}"
    stored = attacker.get(key)
    assert stored is not None  # written through by the create
    version, _, signed = stored.partition(b"|")
    wrong_mac = (b"0" if signed[:1] != b"0" else b"1") + signed[1:]
    attacker.set(key, version + b"|" + wrong_mac)
    path = f"/v1/patients/{patient_id}" + ("/summary" if kind == "summary" else "")

    async with asgi_client(journal_app) as http:
        forged_read = await http.get(path, headers={**headers, "X-Request-ID": "r-forged"})
        assert forged_read.status_code == 200
        # The database's fill replaced the forgery: this one is a journaled hit.
        control = await http.get(path, headers={**headers, "X-Request-ID": "r-control"})
        assert control.status_code == 200

    await drained_with(superuser_conn, attacker, clinic, "r-control")
    action = "summary" if kind == "summary" else "view"
    assert [
        entry for entry in entries(superuser_conn, clinic, patient_id) if entry[2] == "r-forged"
    ] == [(action, "tester", "r-forged")]
