"""The audit journal: cache hits audited through Redis, drained into `access_audit`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from patient_search.app import create_app
from patient_search.audit.journal import GROUP, STREAM, AuditJournal, EntryCodec, decode
from patient_search.audit.repository import Access
from patient_search.db.pool import build_pool
from patient_search.db.statements import NullObserver
from tests.audit.trail_rows import Entries, entries, with_request_id
from tests.conftest import asgi_client, make_settings
from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.private_servers import PrivateRedis

DRAIN_WAIT_S = 10.0


async def _eventually(
    conn: psycopg.Connection[Any], clinic: str, patient_id: object, count: int
) -> Entries:
    """The patient's entries once there are `count` of them (the drain runs in the background)."""
    deadline = time.monotonic() + DRAIN_WAIT_S
    while True:
        found = entries(conn, clinic, patient_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


def _journaled_so_far(redis_url: str) -> int:
    """How many entries were ever appended to the journal (drained or not)."""
    client = redis.Redis.from_url(redis_url)
    try:
        if not client.exists(STREAM):
            return 0
        return int(client.xinfo_stream(STREAM)["entries-added"])
    finally:
        client.close()


async def _until_checked(app: Any) -> str:
    """The journal's state once it has first asked Redis."""
    journal = app.state.services.audit_journal
    deadline = time.monotonic() + DRAIN_WAIT_S
    while journal.state == "starting" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    state: str = journal.state
    return state


@pytest.fixture
async def journal_client(
    database_url: str, private_redis: PrivateRedis
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, redis_url=private_redis.url))
    async with app.router.lifespan_context(app):
        assert await _until_checked(app) == "on"
        async with asgi_client(app) as http:
            yield http


async def _create(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/v1/patients", json=patient_body(), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_cache_hits_are_journaled_and_reach_the_trail_in_access_order(
    journal_client: httpx.AsyncClient,
    private_redis: PrivateRedis,
    superuser_conn: psycopg.Connection[Any],
) -> None:
    client, clinic = journal_client, new_clinic_id()
    alice, bob = bearer(clinic, user="alice"), bearer(clinic, user="bob")
    created = await _create(client, {**alice, **with_request_id("r-create")})
    path = f"/v1/patients/{created['id']}"
    # The create wrote the profile through; without it the first view misses (the trail).
    redis.Redis.from_url(private_redis.url).delete(f"ps:{{{clinic}}}:profile:{created['id']}")
    for rid in ("r-view-1", "r-view-2"):  # a miss, then a hit (journaled)
        assert (await client.get(path, headers={**bob, **with_request_id(rid)})).status_code == 200
    summary = await client.get(f"{path}/summary", headers={**bob, **with_request_id("r-summary")})
    assert summary.status_code == 200  # written through at the create: a hit
    patch = await client.patch(
        path, json={"status": "inactive"}, headers={**alice, **with_request_id("r-up")}
    )
    assert patch.status_code == 200
    assert (
        await client.get(path, headers={**bob, **with_request_id("r-view-3")})
    ).status_code == 200
    assert (
        await client.delete(path, headers={**alice, **with_request_id("r-archive")})
    ).status_code == 204
    # The archive left a tombstone in the cache: a view of it is a 404, and no entry.
    assert (await client.get(path, headers={**bob, **with_request_id("r-gone")})).status_code == 404

    assert await _eventually(superuser_conn, clinic, created["id"], 7) == [
        ("create", "alice", "r-create"),
        ("view", "bob", "r-view-1"),
        ("view", "bob", "r-view-2"),
        ("summary", "bob", "r-summary"),
        ("update", "alice", "r-up"),
        ("view", "bob", "r-view-3"),
        ("archive", "alice", "r-archive"),
    ]
    assert _journaled_so_far(private_redis.url) == 3  # view 2, the summary, view 3
    assert (await client.get("/readyz")).json()["audit_journal"] == "on"


async def test_views_are_not_journaled_when_redis_may_evict_the_journal(
    database_url: str, private_redis: PrivateRedis, superuser_conn: psycopg.Connection[Any]
) -> None:
    redis.Redis.from_url(private_redis.url).config_set("maxmemory-policy", "allkeys-lru")
    app = create_app(make_settings(database_url, redis_url=private_redis.url))
    clinic = new_clinic_id()
    async with app.router.lifespan_context(app):
        async with asgi_client(app) as client:
            assert await _until_checked(app) == "off"
            created = await _create(client, bearer(clinic))
            path = f"/v1/patients/{created['id']}"
            for _ in range(2):
                assert (await client.get(path, headers=bearer(clinic))).status_code == 200
            # Committed before each response, as without a journal: no waiting needed.
            actions = [a for a, _, _ in entries(superuser_conn, clinic, created["id"])]
            assert actions == ["create", "view", "view"]
            assert (await client.get("/readyz")).json()["audit_journal"] == "off"
    assert _journaled_so_far(private_redis.url) == 0


async def test_entries_a_dead_worker_took_are_written_by_another(
    database_url: str, private_redis: PrivateRedis, superuser_conn: psycopg.Connection[Any]
) -> None:
    clinic, patient_id = new_clinic_id(), uuid.uuid4()
    client = redis.Redis.from_url(private_redis.url)
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    entry = EntryCodec(TEST_SECRET).encode(Access(clinic, patient_id, "carol", "view", "r-orphan"))
    client.xadd(STREAM, {"e": entry})
    # A worker takes the entry and dies before writing it.
    assert client.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=10)
    settings = make_settings(database_url)
    pool = build_pool(settings)
    await pool.open(wait=True)
    client.xreadgroup(GROUP, "long-gone", {STREAM: ">"}, count=10)  # a member that took nothing
    journal = AuditJournal(
        private_redis.url,
        pool,
        NullObserver(),
        secret=TEST_SECRET,
        claim_idle_s=0.05,
        departed_idle_s=0.05,
    )
    try:
        await asyncio.sleep(0.1)  # the entry has been idle longer than claim_idle_s
        journal.start()
        found = await _eventually(superuser_conn, clinic, patient_id, 1)
    finally:
        await journal.close()
        await pool.close()
    assert found == [("view", "carol", "r-orphan")]
    assert client.xlen(STREAM) == 0
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    # The members that stopped were dropped from the group once their entries were taken over.
    names = {c["name"] for c in client.xinfo_consumers(STREAM, GROUP)}
    assert not names & {b"dead-worker", b"long-gone"}


async def test_journaling_resumes_after_redis_restarts_empty(
    journal_client: httpx.AsyncClient,
    private_redis: PrivateRedis,
    superuser_conn: psycopg.Connection[Any],
) -> None:
    client, clinic = journal_client, new_clinic_id()
    created = await _create(client, bearer(clinic))
    path = f"/v1/patients/{created['id']}"
    private_redis.stop()
    private_redis.start()  # same port, nothing kept: no stream, no group, no cache
    deadline = time.monotonic() + DRAIN_WAIT_S
    views = 0
    # Views keep being served and audited throughout; once the cache refills and the group
    # is made again, hits are journaled again.
    while _journaled_so_far(private_redis.url) == 0 and time.monotonic() < deadline:
        assert (await client.get(path, headers=bearer(clinic))).status_code == 200
        views += 1
        await asyncio.sleep(0.05)
    assert _journaled_so_far(private_redis.url) >= 1
    entries = await _eventually(superuser_conn, clinic, created["id"], 1 + views)
    assert [a for a, _, _ in entries] == ["create"] + ["view"] * views


def test_an_entry_reads_back_as_it_was_written() -> None:
    codec = EntryCodec(TEST_SECRET)
    for request_id in (None, "r-1"):
        access = Access(new_clinic_id(), uuid.uuid4(), "dave\t'\"", "summary", request_id)
        fields = codec.verified(codec.encode(access))
        assert fields is not None and decode(fields) == access


def test_an_entry_verifies_only_under_the_secret_it_was_written_with() -> None:
    entry = EntryCodec(TEST_SECRET).encode(Access("c", uuid.uuid4(), "a", "view", None))
    assert EntryCodec("another-secret-" + "y" * 40).verified(entry) is None
    assert EntryCodec(TEST_SECRET).verified(entry[:-1]) is None
    assert EntryCodec(TEST_SECRET).verified(b"") is None


@pytest.mark.parametrize(
    "broken",
    [
        b"",
        b"not json",
        b'["c", "not-a-uuid", "a", "view", null, 0]',
        b'["c", "%s", "a", "delete", null, 0]' % str(uuid.uuid4()).encode(),
        b'["c", "%s", "a", "view", 7, 0]' % str(uuid.uuid4()).encode(),
        b'["c", "%s", "a", "view", null]' % str(uuid.uuid4()).encode(),
    ],
)
def test_what_this_service_did_not_write_is_not_an_entry(broken: bytes) -> None:
    assert decode(broken) is None


async def test_without_redis_there_is_no_journal(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).json()["audit_journal"] == "disabled"
