"""Bulk import: validate every record, load good ones in batches, report the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from patient_search.db.pool import AppConnection
from patient_search.db.statements import NullObserver, StatementRunner
from patient_search.db.tenant import clinic_transaction
from patient_search.importing.repository import ImportRepository
from patient_search.importing.rows import ImportRow, RawRecord, Rejection, validate_record

BATCH_SIZE = 20_000


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


def _batches(
    rows: Iterable[ImportRow | Rejection], size: int, report: ImportReport
) -> Iterator[list[ImportRow]]:
    batch: list[ImportRow] = []
    for item in rows:
        if isinstance(item, Rejection):
            report.rejections.append(item)
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _first_occurrences(
    records: Iterable[RawRecord], region: str
) -> Iterator[ImportRow | Rejection]:
    # An MRN twice in one file is ambiguous: the second one is rejected, not silently merged.
    first_line: dict[str, int] = {}
    for record in records:
        result = validate_record(record, region)
        if isinstance(result, ImportRow):
            seen = first_line.setdefault(result.mrn, result.line)
            if seen != result.line:
                result = Rejection(
                    result.line, f"duplicate MRN in this file (first at line {seen})"
                )
        yield result


async def import_records(
    pool: AsyncConnectionPool[AppConnection],
    clinic_id: str,
    records: Iterable[RawRecord],
    region: str,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], object] | None = None,
) -> ImportReport:
    """Load `records` into the clinic; each batch commits on its own."""
    report = ImportReport()
    batches = _batches(_first_occurrences(records, region), batch_size, report)
    # Validation is Python-bound and the merge is PostgreSQL-bound: validating the next batch
    # in a thread while the current one loads keeps both cores busy.
    upcoming = asyncio.create_task(asyncio.to_thread(next, batches, None))
    while (batch := await upcoming) is not None:
        upcoming = asyncio.create_task(asyncio.to_thread(next, batches, None))
        async with clinic_transaction(pool, clinic_id, "write") as conn:
            merged = await ImportRepository(StatementRunner(conn, NullObserver())).load_batch(
                clinic_id, batch
            )
        for row in batch:
            inserted = merged.get(row.mrn)
            if inserted is None:
                report.rejections.append(
                    Rejection(row.line, "the MRN belongs to an archived patient")
                )
            elif inserted:
                report.inserted += 1
            else:
                report.updated += 1
        if progress is not None:
            progress(len(batch))
    report.rejections.sort(key=lambda r: r.line)
    return report
