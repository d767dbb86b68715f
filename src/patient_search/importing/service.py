"""Bulk import: validate every record, load good ones in batches, report the rest."""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from patient_search.db.pool import AppConnection
from patient_search.db.statements import NullObserver, StatementRunner
from patient_search.db.tenant import clinic_transaction
from patient_search.importing.bulk_repository import BulkLoadRepository
from patient_search.importing.repository import ImportRepository, copy_line
from patient_search.importing.rows import ImportRow, RawRecord, Rejection, validate_record

log = logging.getLogger("patient_search.importing")

BATCH_SIZE = 20_000
# Batches validated ahead of the one being loaded.
VALIDATE_AHEAD = 2

# One record's outcome, as plain strings that cross a process boundary cheaply:
# (line, mrn, COPY text line) when valid, (line, None, reason) when rejected.
Outcome = tuple[int, str | None, str]
Validated = list[Outcome]


@dataclass(slots=True)
class ImportReport:
    """What an import did: counts, and every rejected line with its reason."""

    inserted: int = 0
    updated: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """How many records were not loaded."""
        return len(self.rejections)


def validate_batch(records: list[RawRecord], region: str) -> Validated:
    """Validate and normalise a batch of records (in a worker process for big files)."""
    outcomes: Validated = []
    for record in records:
        result = validate_record(record, region)
        if isinstance(result, ImportRow):
            outcomes.append((result.line, result.mrn, copy_line(result)))
        else:
            outcomes.append((result.line, None, result.reason))
    return outcomes


def _validate_plain(records: list[tuple[int, Any, str | None]], region: str) -> Validated:
    # Runs in the worker: records arrive as tuples, which pickle far faster than dataclasses.
    return validate_batch([RawRecord(*record) for record in records], region)


def _plain(records: list[RawRecord]) -> list[tuple[int, Any, str | None]]:
    return [(r.line, r.fields, r.problem) for r in records]


def _chunks(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def _validated_batches(
    records: Iterable[RawRecord], region: str, size: int
) -> AsyncIterator[Validated]:
    """Validated batches in file order.

    Validation is Python-bound and the merge PostgreSQL-bound: a worker process validates
    the next batches while this one loads, so both cores work. A file of one batch never
    pays for starting the process.
    """
    chunks = _chunks(records, size)
    first = next(chunks, None)
    if first is None:
        return
    following = next(chunks, None)
    if following is None:
        yield validate_batch(first, region)
        return
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        pending = deque(
            loop.run_in_executor(executor, _validate_plain, _plain(chunk), region)
            for chunk in itertools.chain([following], itertools.islice(chunks, VALIDATE_AHEAD - 1))
        )
        yield validate_batch(first, region)
        while pending:
            validated = await pending.popleft()
            if (chunk := next(chunks, None)) is not None:
                pending.append(
                    loop.run_in_executor(executor, _validate_plain, _plain(chunk), region)
                )
            yield validated


async def import_records(
    pool: AsyncConnectionPool[AppConnection],
    clinic_id: str,
    records: Iterable[RawRecord],
    region: str,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], object] | None = None,
    owner_conninfo: str | None = None,
) -> ImportReport:
    """Load `records` into the clinic; each batch commits on its own.

    With `owner_conninfo` (a role owning the tables) and an empty database, the whole load
    is one transaction that builds the secondary indexes once at the end instead.
    """
    report = ImportReport()
    # An MRN twice in one file is ambiguous: the second one is rejected, not silently merged.
    first_line: dict[str, int] = {}
    loaded_batches = 0
    async with _bulk_load(owner_conninfo, clinic_id) as bulk:
        async for validated in _validated_batches(records, region, batch_size):
            batch, copy_lines = _accepted(validated, first_line, report)
            if batch and bulk is not None:
                _count(batch, await bulk.rows.load_batch(clinic_id, copy_lines), report)
            elif batch:
                async with clinic_transaction(pool, clinic_id, "write") as conn:
                    repository = ImportRepository(StatementRunner(conn, NullObserver()))
                    merged = await repository.load_batch(clinic_id, copy_lines)
                _count(batch, merged, report)
            if batch:
                loaded_batches += 1
            # ANALYZE after batches 1, 2, 4, 8, …: while the planner believes the tables hold a
            # row or two, it joins and checks foreign keys with plans that read everything
            # loaded so far, and a load turns quadratic (60k rows into a small database: 316 s
            # before, 5.7 s with statistics). In bulk, ANALYZE sees the transaction's own rows.
            if batch and loaded_batches & (loaded_batches - 1) == 0:
                if bulk is not None:
                    await bulk.tables.analyze()
                elif owner_conninfo is not None:
                    await _refresh_statistics(owner_conninfo)
            if progress is not None:
                progress(len(validated))
    report.rejections.sort(key=lambda r: r.line)
    return report


def _accepted(
    validated: Validated, first_line: dict[str, int], report: ImportReport
) -> tuple[list[tuple[int, str]], list[str]]:
    """The batch's loadable (line, MRN) pairs and COPY lines; rejections go to the report."""
    batch: list[tuple[int, str]] = []
    copy_lines: list[str] = []
    for line, mrn, text in validated:
        if mrn is None:
            report.rejections.append(Rejection(line, text))
            continue
        seen = first_line.setdefault(mrn, line)
        if seen != line:
            report.rejections.append(
                Rejection(line, f"duplicate MRN in this file (first at line {seen})")
            )
            continue
        batch.append((line, mrn))
        copy_lines.append(text)
    return batch, copy_lines


def _count(batch: list[tuple[int, str]], merged: dict[str, bool], report: ImportReport) -> None:
    for line, mrn in batch:
        inserted = merged.get(mrn)
        if inserted is None:
            report.rejections.append(Rejection(line, "the MRN belongs to an archived patient"))
        elif inserted:
            report.inserted += 1
        else:
            report.updated += 1


async def _refresh_statistics(owner_conninfo: str) -> None:
    """ANALYZE the imported tables over a connection of their owner; skipped quietly when
    the role may not."""
    try:
        async with await psycopg.AsyncConnection.connect(
            owner_conninfo, autocommit=True, options="-c statement_timeout=0"
        ) as conn:
            await BulkLoadRepository(StatementRunner(conn, NullObserver())).analyze()  # type: ignore[arg-type]
    except psycopg.Error as exc:
        log.info("import_statistics_skipped", extra={"error": type(exc).__name__})


@dataclass(frozen=True, slots=True)
class _BulkSession:
    rows: ImportRepository
    tables: BulkLoadRepository


@asynccontextmanager
async def _bulk_load(
    owner_conninfo: str | None, clinic_id: str
) -> AsyncIterator[_BulkSession | None]:
    """One transaction over an empty database with its secondary indexes dropped; None
    (load batch by batch) when there is no owner connection or the database holds data."""
    if owner_conninfo is None:
        yield None
        return
    conn = await psycopg.AsyncConnection.connect(
        owner_conninfo, autocommit=True, row_factory=dict_row, options="-c statement_timeout=0"
    )
    async with conn:
        await conn.execute(
            sql.SQL("BEGIN; SELECT set_config('app.clinic_id', {}, true)").format(
                sql.Literal(clinic_id)
            )
        )
        runner = StatementRunner(conn, NullObserver())
        bulk = BulkLoadRepository(runner)
        try:
            claimed = await bulk.claim_empty_database()
        except psycopg.Error:
            claimed = False
        if not claimed:
            await conn.execute("ROLLBACK")
            yield None
            return
        log.info("bulk_load_started")
        try:
            indexes = await bulk.drop_secondary_indexes()
            yield _BulkSession(ImportRepository(runner), bulk)
            await bulk.build_indexes(indexes)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
