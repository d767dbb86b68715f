"""SQL of `patient-search duplicates`: the clinic streamed once per blocking pass, sorted by
the pass's key, and what the weights are estimated from. Read in the connection's clinic
transaction, so row-level security scopes every statement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from patient_search.db.statements import NullObserver, Row, Statement, StatementRunner
from patient_search.search.evidence import TermWeights

MAX_BLOCK = 100
_COLUMNS = """
    p.id, p.mrn, p.first_name, p.middle_name, p.last_name, p.date_of_birth, p.sex,
    p.email_normalized, p.address,
    ARRAY(SELECT ph.e164 FROM patient_phones ph
          WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id
            AND ph.e164 IS NOT NULL) AS phones_e164
"""


@dataclass(frozen=True, slots=True)
class BlockingQuery:
    """A blocking pass: its rows sorted by block, how many pairs its blocks hold, and the
    fields its key fixes."""

    rows: Statement
    pairs: Statement
    key_fields: frozenset[str]


def _keyed(name: str, key: str, key_fields: frozenset[str]) -> BlockingQuery:
    where = f"p.deleted_at IS NULL AND {key} IS NOT NULL AND {key} <> ''"
    return BlockingQuery(
        Statement(
            f"duplicates.{name}_blocks",
            f"SELECT {key} AS block, {_COLUMNS} FROM patients p WHERE {where} ORDER BY {key}",
        ),
        Statement(
            f"duplicates.{name}_pairs",
            f"SELECT coalesce(sum(n * (n - 1) / 2), 0) AS pairs FROM (SELECT count(*) AS n"
            f" FROM patients p WHERE {where} GROUP BY {key} HAVING count(*) <= {MAX_BLOCK}) b",
        ),
        key_fields,
    )


_SHARED_TERMS = f"""
    FROM patient_name_terms t JOIN patients p ON p.id = t.patient_id
    WHERE NOT t.part AND p.deleted_at IS NULL
      AND t.term IN (SELECT term FROM patient_name_terms WHERE NOT part
                     GROUP BY term HAVING count(*) <= {MAX_BLOCK})
"""
STREET_KEY = "regexp_replace(lower(p.address->'lines'->>0), '[^a-z0-9]', '', 'g')"
BLOCKING_QUERIES: dict[str, BlockingQuery] = {
    "date of birth": _keyed("dob", "p.date_of_birth::text", frozenset({"date_of_birth"})),
    "last name": _keyed("last_name", "p.last_key", frozenset({"last_name"})),
    "postal code": _keyed("postal_code", "p.postal_code_key", frozenset({"postal_code"})),
    # The first address line, letters and digits only ("10 Bate Pl." -> "10batepl"): one
    # household's records whose names, date and postal code were all mistyped.
    "street": _keyed("street", STREET_KEY, frozenset({"address"})),
    # Any whole first or last name shared, whichever field it is in: swapped names, and a
    # first name kept while the surname and the date changed. Common names are left out
    # before their rows are read.
    "name": BlockingQuery(
        Statement(
            "duplicates.name_blocks",
            f"SELECT t.term AS block, {_COLUMNS} {_SHARED_TERMS} ORDER BY t.term",
        ),
        Statement(
            "duplicates.name_pairs",
            "SELECT coalesce(sum(n * (n - 1) / 2), 0) AS pairs"
            f" FROM (SELECT count(*) AS n {_SHARED_TERMS} GROUP BY t.term) b",
        ),
        frozenset({"first_name", "last_name"}),
    ),
}
RANDOM_SAMPLE = Statement(
    "duplicates.random_sample",
    "SELECT " + _COLUMNS + " FROM patients p WHERE p.deleted_at IS NULL"
    " ORDER BY md5(p.id::text) LIMIT %(patients)s",  # pseudo-random, the same every run
)
TERM_COUNTS = Statement(
    "duplicates.term_counts",
    "SELECT term, count(*) AS patients FROM patient_name_terms GROUP BY term",
)
CLINIC_SIZE = Statement(
    "duplicates.clinic_size",
    "SELECT count(*) AS patients FROM patients WHERE deleted_at IS NULL",
)


class ScanRepository:
    """The duplicate scan's reads, on one clinic transaction's connection."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn
        self._db = StatementRunner(conn, NullObserver())

    async def term_weights(self) -> TermWeights:
        """Every name term's patient count, and the clinic's size (exact: a batch job)."""
        frequencies = {
            row["term"]: int(row["patients"]) for row in await self._db.fetch_all(TERM_COUNTS)
        }
        size = await self._db.fetch_one(CLINIC_SIZE)
        return TermWeights(int(size["patients"]) if size else 0, frequencies)

    async def random_sample(self, patients: int) -> list[Row]:
        """A pseudo-random sample of the clinic's live patients."""
        return await self._db.fetch_all(RANDOM_SAMPLE, {"patients": patients})

    async def pair_count(self, query: BlockingQuery) -> int:
        """How many pairs the pass's blocks of at most MAX_BLOCK patients hold."""
        row = await self._db.fetch_one(query.pairs)
        return int(row["pairs"]) if row else 0

    async def blocks(self, query: BlockingQuery) -> AsyncIterator[list[Row]]:
        """The pass's blocks, one list of rows each, streamed through a server-side cursor."""
        name = query.rows.name.replace(".", "_")
        async with self._conn.cursor(name=name, row_factory=dict_row) as cursor:
            await cursor.execute(sql.SQL(query.rows.sql))  # type: ignore[arg-type]
            block: list[Row] = []
            async for row in cursor:
                if block and row["block"] != block[0]["block"]:
                    yield block
                    block = []
                block.append(row)
            if block:
                yield block
