"""Named SQL statements and the runner that times each one.

Every statement has a name; the name — never the SQL text or its parameters — is what
metrics and the slow-query log show, so no patient data can leak through them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString, Protocol

from psycopg import sql

from patient_search.db.pool import AppConnection

Params = Mapping[str, Any] | Sequence[Any] | None
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Statement:
    """A parameterised SQL statement with the name it is reported under."""

    name: str
    sql: LiteralString | sql.Composed


class QueryObserver(Protocol):
    """Receives the timing of every statement (metrics, slow-query log)."""

    def observe(self, name: str, seconds: float, rows: int) -> None: ...


class NullObserver:
    """Observes nothing; for tools that run outside the service."""

    def observe(self, name: str, seconds: float, rows: int) -> None:
        return None


class CompositeObserver:
    """Hands every timing to several observers, in order (metrics, slow-query log, alerts)."""

    __slots__ = ("_observers",)

    def __init__(self, *observers: QueryObserver) -> None:
        self._observers = observers

    def observe(self, name: str, seconds: float, rows: int) -> None:
        for observer in self._observers:
            observer.observe(name, seconds, rows)


class StatementRunner:
    """Runs named statements on one connection and reports their timings."""

    def __init__(self, conn: AppConnection, observer: QueryObserver) -> None:
        self.conn = conn
        self._observer = observer
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def after_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(action)

    async def run_after_commit(self) -> None:
        """Called by the transaction's owner right after COMMIT."""
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            await action()

    async def fetch_all(self, statement: Statement, params: Params = None) -> list[Row]:
        """All rows of a query."""
        started = time.perf_counter()
        cursor = await self.conn.execute(statement.sql, params)
        rows: list[Row] = await cursor.fetchall() if cursor.description else []
        self._observer.observe(statement.name, time.perf_counter() - started, len(rows))
        return rows

    async def fetch_batch(self, queries: Sequence[tuple[Statement, Params]]) -> list[list[Row]]:
        """The rows of several independent queries, sent together: one round trip in all.

        Timed as one unit, under the statements' names joined by "+" (still no SQL text)."""
        started = time.perf_counter()
        async with self.conn.pipeline():
            cursors = [
                await self.conn.execute(statement.sql, params) for statement, params in queries
            ]
        results: list[list[Row]] = [
            await cursor.fetchall() if cursor.description else [] for cursor in cursors
        ]
        name = "+".join(statement.name for statement, _ in queries)
        self._observer.observe(name, time.perf_counter() - started, sum(map(len, results)))
        return results

    async def fetch_one(self, statement: Statement, params: Params = None) -> Row | None:
        """The first row of a query, or None."""
        rows = await self.fetch_all(statement, params)
        return rows[0] if rows else None

    async def execute(self, statement: Statement, params: Params = None) -> int:
        """Run a statement for its effect; the number of rows it touched."""
        started = time.perf_counter()
        cursor = await self.conn.execute(statement.sql, params)
        affected = cursor.rowcount
        self._observer.observe(statement.name, time.perf_counter() - started, max(affected, 0))
        return affected
