"""The audit journal: a cache hit's audit entry travels with the cache read, in Redis.

A profile or summary served from Redis used to wait for its own PostgreSQL commit (the
`AccessTrail`): a second server round trip on a path that otherwise has one, and under load
the slowest part of a cache hit (decision 0014). When the journal is active, the cache read
is a script that reads the key and, only when it holds a record, appends the entry to one
Redis stream in the same step: the entry exists before the record leaves the service, at no
extra round trip. Every worker drains the stream into `access_audit` (a consumer group, so
each entry is taken by one worker) with a flushed commit, then acknowledges and deletes
what it wrote. Entries a dead worker had taken are claimed by a live one after
`CLAIM_IDLE_S`; a crash between a commit and its acknowledgement writes entries twice,
never zero times.

What can lose an entry: Redis itself dying before the drain took it, normally within a
tenth of a second, the same order as the few hundred milliseconds a PostgreSQL crash can
take from the trail's unflushed commits. So that this stays the only way, the journal is
used only where Redis never evicts the stream (an eviction policy that spares keys without
a TTL, checked with CONFIG; a Redis that will not say, or a cluster, where the script's two
keys would sit in different slots, turns it off), and it stops at once when a drain fails
(PostgreSQL away) or the backlog passes `max_backlog`: views then wait for their own
commit, and are refused while it cannot be made, as before. It holds identifiers (clinic,
patient id, user id, request id), never record content, and nothing in it is served.

Whoever can reach Redis can add to the stream, so every entry carries an HMAC of its
fields under a key derived from the service secret, and the drain writes only entries whose
MAC holds and whose time is near the drain's (`MAX_ENTRY_AGE_S` back, `MAX_ENTRY_LEAD_S`
ahead). The others are dropped from the stream, never written, and counted (`rejected`,
and one `audit_journal_rejected_entries` log line per drained batch, without their content).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import orjson
import redis.asyncio as redis
from psycopg_pool import AsyncConnectionPool

from patient_search.audit.repository import Access, Action, AuditRepository
from patient_search.db.statements import QueryObserver, StatementRunner
from patient_search.db.tenant import clinic_transaction
from patient_search.settings import Settings
from patient_search.signing import derive_key, mac, split_signed

log = logging.getLogger("patient_search.audit")

# Not under the cache's prefix: clearing the cache (`clear`, the benchmark) never drops it.
STREAM = "ps-audit:journal"
FIELD = b"e"  # each message holds one entry, encoded by `encode`
GROUP = "access-audit"
# An entry taken by a worker that has not acknowledged it for this long is taken over.
CLAIM_IDLE_S = 30.0
# A group member that has not read for this long has stopped (live ones read constantly).
DEPARTED_IDLE_S = 600.0
# Keys without a TTL are never evicted under these policies (the stream has none).
NON_EVICTING = frozenset(
    {"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}
)
_ACTIONS: frozenset[str] = frozenset(get_args(Action))
JournalState = Literal["starting", "on", "off"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# The table's own limits (migration 0003): an entry that would be refused there is not
# journaled; it takes the database path, where the request sees the refusal.
MAX_ACTOR = 256
MAX_REQUEST_ID = 128
# How far an entry's time may be from the drain's. A genuine entry is drained within a
# second, or when PostgreSQL comes back from an outage (the journal stops taking entries at
# the first failed drain, so the wait is the outage): a day covers any outage the stream
# is worth keeping for. Ahead: clock skew between the hosts of the workers.
MAX_ENTRY_AGE_S = 24 * 3600.0
MAX_ENTRY_LEAD_S = 60.0
Rejection = Literal["signature", "time", "unreadable"]
RejectionRecorder = Callable[[Rejection, int], None]


def no_rejection_recording(reason: Rejection, count: int) -> None:
    """The recorder used when nothing counts rejected entries."""


@dataclass(slots=True)
class JournalSlip:
    """One view's entry, offered to the cache read; `appended` says whether it was taken."""

    entry: bytes
    stream: str = STREAM
    appended: bool = field(default=False)


def journal_key(secret: str) -> bytes:
    """The entries' MAC key, derived from the service secret (never the secret itself)."""
    return derive_key(secret, b"audit journal v1")


class EntryCodec:
    """Entries as the one field of their stream message: MAC, then JSON (any actor string
    is safe in it)."""

    def __init__(self, secret: str) -> None:
        self._key = journal_key(secret)

    def encode(self, access: Access) -> bytes:
        fields = orjson.dumps(
            [
                access.clinic_id,
                str(access.patient_id),
                access.actor,
                access.action,
                access.request_id,
                (access.at - _EPOCH) // _MICROSECOND,  # exact, unlike a float timestamp
            ]
        )
        return mac(self._key, fields) + fields

    def verified(self, entry: bytes) -> bytes | None:
        """The fields of an entry this service wrote (its MAC holds), else None."""
        return split_signed(self._key, b"", entry)


def decode(fields: bytes) -> Access | None:
    """The access in an entry's verified fields, or None when they are not one."""
    try:
        clinic_id, patient_id, actor, action, request_id, at = orjson.loads(fields)
        if action not in _ACTIONS or not isinstance(clinic_id, str) or not isinstance(actor, str):
            return None
        if request_id is not None and not isinstance(request_id, str):
            return None
        return Access(
            clinic_id=clinic_id,
            patient_id=uuid.UUID(patient_id),
            actor=actor,
            action=cast(Action, action),
            request_id=request_id,
            at=_EPOCH + at * _MICROSECOND,
        )
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, OverflowError, OSError):
        return None


def fits_table(access: Access) -> bool:
    return 1 <= len(access.actor) <= MAX_ACTOR and len(access.request_id or "") <= MAX_REQUEST_ID


async def redis_keeps_the_journal(client: redis.Redis) -> bool:
    """Whether this Redis never evicts the stream; False when it will not say."""
    try:
        info = await client.info("cluster")
        if info.get("cluster_enabled"):
            return False
        policy = await client.config_get("maxmemory-policy")
    except redis.ResponseError:  # CONFIG renamed or disabled, as on many managed services
        return False
    return policy.get("maxmemory-policy") in NON_EVICTING


class AuditJournal:
    """Decides whether views are journaled, and drains the journal into `access_audit`."""

    def __init__(
        self,
        redis_url: str,
        pool: AsyncConnectionPool[Any],
        observer: QueryObserver,
        *,
        secret: str,
        batch: int = 500,
        max_backlog: int = 10_000,
        check_every_s: float = 10.0,
        claim_idle_s: float = CLAIM_IDLE_S,
        departed_idle_s: float = DEPARTED_IDLE_S,
        block_ms: int = 100,
        gather_s: float = 0.05,
        max_entry_age_s: float = MAX_ENTRY_AGE_S,
        max_entry_lead_s: float = MAX_ENTRY_LEAD_S,
        record_rejected: RejectionRecorder = no_rejection_recording,
    ) -> None:
        # Its own connections: a blocking read must not hold one of the cache's, whose
        # timeouts are tens of milliseconds.
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self._pool = pool
        self._observer = observer
        self._batch = batch
        self._max_backlog = max_backlog
        self._check_every_s = check_every_s
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._departed_idle_ms = int(departed_idle_s * 1000)
        self._block_ms = block_ms
        self._gather_s = gather_s
        self._codec = EntryCodec(secret)
        self._max_age = dt.timedelta(seconds=max_entry_age_s)
        self._max_lead = dt.timedelta(seconds=max_entry_lead_s)
        # Entries dropped by the drain, by reason, since this worker started.
        self.rejected: Counter[Rejection] = Counter()
        self._record_rejected = record_rejected
        self._consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._state: JournalState = "starting"
        self._group_ready = False
        # A drain failed (PostgreSQL or Redis away): journal nothing until one succeeds, so
        # entries never pile up in a Redis that does not keep them on disk.
        self._failing = False
        self._own_pending = True  # look at what this consumer holds before taking more
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def state(self) -> JournalState:
        """on: hits are journaled; off: every view commits its own entry (as /readyz says)."""
        return self._state

    @property
    def active(self) -> bool:
        return self._state == "on" and not self._closing

    def slip(self, access: Access) -> JournalSlip | None:
        """The entry to offer the cache read, or None when it must go the database's way."""
        if not self.active or not fits_table(access):
            return None
        return JournalSlip(self._codec.encode(access))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-journal")

    async def close(self) -> None:
        """Stop taking entries, write what has arrived, stop; the rest stays for the others."""
        self._closing = True
        if self._task is not None:
            await self._task
            self._task = None
        await self._client.aclose()

    async def _drain_remaining(self) -> None:
        """Write what this worker holds and what has arrived."""
        while self._group_ready:
            taken = await self._take(block=False)
            if not taken:
                return
            await self._write(taken)

    # --- the drain loop -----------------------------------------------------------------
    async def _run(self) -> None:
        next_check = 0.0
        while not self._closing:
            try:
                if time.monotonic() >= next_check:
                    await self._check()
                    next_check = time.monotonic() + self._check_every_s
                if not self._group_ready:
                    await asyncio.sleep(min(0.2, max(0.0, next_check - time.monotonic())))
                    continue
                taken = await self._take(block=True)
                if taken:
                    await self._write(taken)
                if 0 < len(taken) < self._batch:
                    # Let entries gather: a drain costs five round trips however few it takes.
                    await asyncio.sleep(self._gather_s)
            except Exception as exc:  # Redis or PostgreSQL away: entries wait in the stream
                if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                    # Redis restarted empty, and the group went with the stream: made again.
                    self._group_ready = False
                self._own_pending = True
                self._failing, self._state = True, "off"
                next_check = time.monotonic() + 1.0
                log.warning("audit_journal_drain_failed", extra={"error_type": type(exc).__name__})
                await asyncio.sleep(1.0)
        try:
            await self._drain_remaining()
        except Exception as exc:  # what is left is taken over by another worker
            log.warning(
                "audit_journal_final_drain_failed", extra={"error_type": type(exc).__name__}
            )

    async def _check(self) -> None:
        """Whether to journal; create the group; take over a dead worker's entries."""
        if self._failing:
            async with self._pool.connection() as conn:  # raises while the database is away
                await conn.execute("SELECT 1")
            self._failing = False
        keeps = await redis_keeps_the_journal(self._client)
        backlog = 0
        if keeps:
            try:
                await self._client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._group_ready = True
        if self._group_ready:
            # Drained even when no longer journaling: what is in the stream must reach the table.
            backlog = await self._client.xlen(STREAM)
            _, claimed, _ = await self._client.xautoclaim(
                STREAM, GROUP, self._consumer, self._claim_idle_ms, "0-0", count=self._batch
            )
            if claimed:
                self._own_pending = True
            await self._forget_departed_consumers()
        was = self._state
        self._state = "on" if keeps and backlog < self._max_backlog else "off"
        if was != self._state:
            log.info("audit_journal", extra={"state": self._state, "backlog": backlog})

    async def _forget_departed_consumers(self) -> None:
        """Drop group members that left nothing pending and have not read for a long time
        (workers that stopped or died: a live one reads every `block_ms`)."""
        for consumer in await self._client.xinfo_consumers(STREAM, GROUP):
            if consumer["pending"] == 0 and consumer["idle"] > self._departed_idle_ms:
                await self._client.xgroup_delconsumer(STREAM, GROUP, consumer["name"])

    async def _take(self, *, block: bool) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        if self._own_pending:
            # Entries this consumer took before but did not acknowledge (a failed write).
            entries = _entries_of(
                await self._client.xreadgroup(
                    GROUP, self._consumer, {STREAM: "0"}, count=self._batch
                )
            )
            if entries:
                return entries
            self._own_pending = False
        replies = await self._client.xreadgroup(
            GROUP,
            self._consumer,
            {STREAM: ">"},
            count=self._batch,
            block=self._block_ms if block else None,
        )
        return _entries_of(replies)

    async def _write(self, taken: Sequence[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        readable: list[tuple[bytes, Access]] = []
        nothing_to_write: list[bytes] = []
        rejected: Counter[Rejection] = Counter()
        now = dt.datetime.now(dt.UTC)
        for entry_id, message in taken:
            # A pending entry deleted meanwhile comes back without fields.
            verdict = self._admitted(message, now) if message else None
            if isinstance(verdict, Access):
                readable.append((entry_id, verdict))
            else:
                nothing_to_write.append(entry_id)
                if verdict is not None:
                    rejected[verdict] += 1
        if nothing_to_write:
            await self._done(nothing_to_write)
        for reason, count in rejected.items():  # counted once they are out of the stream
            log.error("audit_journal_rejected_entries", extra={"reason": reason, "count": count})
            self._record_rejected(reason, count)
        self.rejected.update(rejected)
        readable.sort(key=lambda item: item[1].clinic_id)
        for clinic_id, group in itertools.groupby(readable, lambda item: item[1].clinic_id):
            items = list(group)
            # A flushed commit (the pool's default): off the request path it costs no one.
            async with clinic_transaction(self._pool, clinic_id, "write") as conn:
                await AuditRepository(StatementRunner(conn, self._observer)).record_batch(
                    [access for _, access in items]
                )
            # A crash between the commit and here writes these entries twice, never zero times.
            await self._done([entry_id for entry_id, _ in items])

    def _admitted(self, message: dict[bytes, bytes], now: dt.datetime) -> Access | Rejection:
        """The access a message records, or why it is kept out of the table."""
        fields = self._codec.verified(message.get(FIELD, b""))
        if fields is None:
            return "signature"  # not written by this service (or by a release before MACs)
        access = decode(fields)
        if access is None:
            return "unreadable"  # signed, yet not an entry: a bug, not a forgery
        if not now - self._max_age <= access.at <= now + self._max_lead:
            return "time"
        return access

    async def _done(self, ids: Sequence[bytes]) -> None:
        async with self._client.pipeline(transaction=False) as done:
            done.xack(STREAM, GROUP, *ids)
            done.xdel(STREAM, *ids)
            await done.execute()


def _entries_of(replies: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an XREADGROUP reply for the one stream (RESP2: [[stream, entries]])."""
    return cast(list[tuple[bytes, dict[bytes, bytes] | None]], replies[0][1] if replies else [])


def build_audit_journal(
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    observer: QueryObserver,
    record_rejected: RejectionRecorder = no_rejection_recording,
) -> AuditJournal | None:
    """The journal when the settings allow one; whether Redis keeps it is its own check."""
    if (
        settings.audit_journal == "off"
        or settings.audit_durable_views
        or not settings.cache_enabled
        or not settings.redis_url
    ):
        return None
    return AuditJournal(
        settings.redis_url,
        pool,
        observer,
        secret=settings.effective_jwt_secret,
        record_rejected=record_rejected,
    )
