"""Audit entries for reads, which a cache hit serves without touching the database.

A write records its entry inside its own transaction (`PatientService`). A read may never
reach the database, so its entry is appended here — unless it was a Redis cache hit that
the journal took (`audit/journal.py`) — and the response waits until the entry has
committed: no record is shown without its audit entry, and neither a crash of the
service nor a graceful shutdown (which drains requests first) loses one. Unless `durable`,
the commit does not wait for the WAL flush: only a crash of PostgreSQL itself can then lose
the last few hundred milliseconds of view entries (never a write's, which commit with it).

Entries are group-committed: one writer task takes whatever has queued while the previous
batch was committing, so at low load a view costs one short transaction of its own and at
high load many views share one. The queue is bounded: beyond `max_queued` waiting entries a
view is refused (503) rather than served unaudited.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from patient_search.audit.repository import RECORD_BATCH, Access, batch_params
from patient_search.db.statements import QueryObserver
from patient_search.db.tenant import clinic_write_once
from patient_search.errors import ProblemError

log = logging.getLogger("patient_search.audit")


class AuditBacklog(ProblemError):
    status = 503
    title = "Service unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the access audit is falling behind; retry shortly", headers={"Retry-After": "1"}
        )


class AccessTrail:
    """Appends read accesses to `access_audit` in batches; each caller waits for its commit."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        observer: QueryObserver,
        *,
        durable: bool = False,
        max_batch: int = 500,
        max_queued: int = 10_000,
    ) -> None:
        self._pool = pool
        self._durable = durable
        self._observer = observer
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._queue: list[tuple[Access, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="access-trail")

    async def record(self, access: Access) -> None:
        """Return once the entry has committed; raise if it could not be written."""
        if self._task is None or self._closing:
            await self._write_clinic(access.clinic_id, [access])
            return
        if len(self._queue) >= self._max_queued:
            log.error("audit_backlog", extra={"queued": len(self._queue)})
            raise AuditBacklog()
        done = asyncio.get_running_loop().create_future()
        self._queue.append((access, done))
        self._arrived.set()
        # shield: a client that disconnects must not cancel the entry (it is written anyway).
        await asyncio.shield(done)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._arrived.wait()
                self._arrived.clear()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            await self._write_batch(batch)

    async def _write_batch(self, batch: Sequence[tuple[Access, asyncio.Future[None]]]) -> None:
        by_clinic = itertools.groupby(
            sorted(batch, key=lambda item: item[0].clinic_id), key=lambda item: item[0].clinic_id
        )
        for clinic_id, items in by_clinic:
            group = list(items)
            try:
                await self._write_clinic(clinic_id, [access for access, _ in group])
            except Exception as exc:  # each waiting request gets the error (503 for an outage)
                log.warning("audit_write_failed", extra={"error_type": type(exc).__name__})
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in group:
                    if not done.done():
                        done.set_result(None)

    async def _write_clinic(self, clinic_id: str, entries: Sequence[Access]) -> None:
        started = time.perf_counter()
        await clinic_write_once(
            self._pool,
            clinic_id,
            RECORD_BATCH,
            batch_params(entries),
            wait_for_flush=self._durable,
        )
        self._observer.observe(RECORD_BATCH.name, time.perf_counter() - started, len(entries))
