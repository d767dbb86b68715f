"""`patient-search duplicates`: the suspected duplicate pairs already in a clinic.

The clinic is streamed once per blocking key (date of birth, last name, postal code), sorted
by that key; patients sharing a key value form a block, and every pair inside a block is
compared as `/match` compares (`compare.py`). A pair seen in several blocks is graded once.
Blocks larger than MAX_BLOCK (a common surname) are skipped and counted: their pairs still
meet in the date-of-birth or postal-code blocks.
"""

from __future__ import annotations

import csv
import itertools
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from patient_search.matching.compare import GRADES, Grade, compare
from patient_search.matching.service import stored_record
from patient_search.search.evidence import TermWeights

MAX_BLOCK = 100
# Key expressions are constants of this module, never input.
BLOCKING_KEYS = {
    "date of birth": "p.date_of_birth::text",
    "last name": "p.last_key",
    "postal code": "p.postal_code_key",
}
_ROWS = """
    SELECT {key} AS block, p.id, p.mrn, p.first_name, p.middle_name, p.last_name,
           p.date_of_birth, p.sex, p.email_normalized, p.address,
           ARRAY(SELECT ph.e164 FROM patient_phones ph
                 WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id
                   AND ph.e164 IS NOT NULL) AS phones_e164
    FROM patients p
    WHERE p.deleted_at IS NULL AND {key} IS NOT NULL AND {key} <> ''
    ORDER BY {key}
"""
TERM_COUNTS = "SELECT term, count(*) AS patients FROM patient_name_terms GROUP BY term"
CLINIC_SIZE = "SELECT count(*) AS patients FROM patients WHERE deleted_at IS NULL"


@dataclass(frozen=True, slots=True)
class SuspectedPair:
    """Two patients who may be one person."""

    a: uuid.UUID
    b: uuid.UUID
    mrn_a: str
    mrn_b: str
    grade: Grade
    score: float


@dataclass(slots=True)
class ScanReport:
    pairs: list[SuspectedPair]
    compared: int
    skipped_blocks: int


async def _blocks(conn: AsyncConnection[Any], key: str) -> AsyncIterator[list[dict[str, Any]]]:
    query = sql.SQL(_ROWS.format(key=key))
    async with conn.cursor(name=f"duplicates_{abs(hash(key))}", row_factory=dict_row) as cursor:
        await cursor.execute(query)
        block: list[dict[str, Any]] = []
        async for row in cursor:
            if block and row["block"] != block[0]["block"]:
                yield block
                block = []
            block.append(row)
        if block:
            yield block


async def scan(
    conn: AsyncConnection[Any], min_grade: Grade, progress: TextIO = sys.stderr
) -> ScanReport:
    """Every suspected pair of the clinic (the connection's transaction is scoped to it)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(TERM_COUNTS)
        frequencies = {row["term"]: int(row["patients"]) for row in await cursor.fetchall()}
        await cursor.execute(CLINIC_SIZE)
        size_row = await cursor.fetchone()
    weights = TermWeights(int(size_row["patients"]) if size_row else 0, frequencies)
    accepted = set(GRADES[: GRADES.index(min_grade) + 1])
    # Only suspected pairs are kept: a pair met in two blocks is simply compared twice.
    best: dict[tuple[uuid.UUID, uuid.UUID], SuspectedPair] = {}
    compared = skipped = 0
    for label, key in BLOCKING_KEYS.items():
        blocks = 0
        async for block in _blocks(conn, key):
            blocks += 1
            if len(block) > MAX_BLOCK:
                skipped += 1
                continue
            records = [(row, stored_record(row)) for row in block]
            for (row_a, a), (row_b, b) in itertools.combinations(records, 2):
                ids = (row_a["id"], row_b["id"]) if row_a["id"] < row_b["id"] else (
                    row_b["id"], row_a["id"])  # fmt: skip
                compared += 1
                comparison = compare(a, b, weights)
                grade = comparison.grade(weights.clinic_size)
                if grade in accepted:
                    first, second = (row_a, row_b) if row_a["id"] == ids[0] else (row_b, row_a)
                    best[ids] = SuspectedPair(
                        ids[0],
                        ids[1],
                        first["mrn"],
                        second["mrn"],
                        grade,
                        round(comparison.probability(weights.clinic_size), 6),
                    )
        print(
            f"duplicates: {label}: {blocks} blocks, {compared} pairs compared, "
            f"{len(best)} suspected so far",
            file=progress,
        )
    pairs = sorted(best.values(), key=lambda p: (-p.score, str(p.a), str(p.b)))
    return ScanReport(pairs, compared, skipped)


def write_csv(path: Path, pairs: Sequence[SuspectedPair]) -> None:
    """One row per pair: patient_id_a,patient_id_b,mrn_a,mrn_b,grade,score."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id_a", "patient_id_b", "mrn_a", "mrn_b", "grade", "score"])
        for pair in pairs:
            writer.writerow([pair.a, pair.b, pair.mrn_a, pair.mrn_b, pair.grade, pair.score])
