"""SQL of the initial bulk load: drop the secondary indexes, load, build them once.

Building an index over a million rows sorts once; maintaining it row by row costs several
times more (measured in docs/decisions/0009-bulk-initial-load.md). This is only done for
an empty database, inside the one transaction that loads it, so a failed or killed load
rolls back to the empty database with every index in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from patient_search.db.statements import Statement, StatementRunner

# The tables an import writes; all of them are locked for the load.
IMPORTED_TABLES = (
    "patients",
    "patient_phones",
    "patient_name_terms",
    "search_vocabulary",
    "search_vocabulary_keys",
)

CAN_OWN_TABLES = Statement(
    "bulk.can_own_tables",
    """
    SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) AS owns
    FROM pg_class c
    WHERE c.oid = ANY(%(tables)s::regclass[])
    """,
)
LOCK_TABLES = Statement(
    "bulk.lock_tables",
    sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
        sql.SQL(", ").join(sql.Identifier(t) for t in IMPORTED_TABLES)
    ),
)
DATABASE_IS_EMPTY = Statement(
    "bulk.database_is_empty", "SELECT NOT EXISTS (SELECT 1 FROM patients) AS empty"
)
# Indexes that back no constraint: the merge's ON CONFLICT and the foreign keys need the
# primary keys and the MRN constraint, so those stay.
SECONDARY_INDEXES = Statement(
    "bulk.secondary_indexes",
    """
    SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
    FROM pg_index i
    WHERE i.indrelid = ANY(%(tables)s::regclass[])
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
    ORDER BY 1
    """,
)
SET_BUILD_MEMORY = Statement("bulk.set_build_memory", "SET LOCAL maintenance_work_mem = '1GB'")


@dataclass(frozen=True, slots=True)
class SecondaryIndex:
    name: str
    definition: str


class BulkLoadRepository:
    """Prepares an empty database for one big load and finishes it."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def claim_empty_database(self) -> bool:
        """Lock the imported tables; whether this role owns them and no patient exists."""
        owns = await self._db.fetch_one(CAN_OWN_TABLES, {"tables": list(IMPORTED_TABLES)})
        if not (owns and owns["owns"]):
            return False
        await self._db.execute(LOCK_TABLES)
        empty = await self._db.fetch_one(DATABASE_IS_EMPTY)
        return bool(empty and empty["empty"])

    async def drop_secondary_indexes(self) -> list[SecondaryIndex]:
        """Drop the indexes no constraint needs; their definitions, to build them again."""
        rows = await self._db.fetch_all(SECONDARY_INDEXES, {"tables": list(IMPORTED_TABLES)})
        indexes = [SecondaryIndex(row["name"], row["definition"]) for row in rows]
        for index in indexes:
            await self._db.execute(
                Statement(
                    "bulk.drop_index", sql.SQL("DROP INDEX {}").format(sql.Identifier(index.name))
                )
            )
        return indexes

    async def analyze(self) -> None:
        """Refresh the planner's statistics of the imported tables."""
        for table in IMPORTED_TABLES:
            await self._db.execute(
                Statement("bulk.analyze", sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
            )

    async def build_indexes(self, indexes: list[SecondaryIndex]) -> None:
        """Build the dropped indexes from their recorded definitions, then analyse."""
        await self._db.execute(SET_BUILD_MEMORY)
        for index in indexes:
            # The definition comes from pg_get_indexdef, not from input.
            await self._db.execute(Statement("bulk.build_index", sql.SQL(index.definition)))  # type: ignore[arg-type]
        await self.analyze()
