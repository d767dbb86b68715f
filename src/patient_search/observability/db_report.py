"""`patient-search db-report`: where the database spends its time and what it is waiting on.

Reads `pg_stat_statements` (normalised statement texts: constants are `$n`, never values) and
`pg_stat_activity` (states, wait events, ages — never the text of a session's query, which
may quote values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

_STATEMENTS = """
SELECT calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms, rows,
       shared_blks_hit, shared_blks_read, query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND calls >= %(min_calls)s
ORDER BY {order} DESC
LIMIT %(top)s
"""
_CLIENTS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"
_CONNECTIONS = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int AS max,
       current_setting('superuser_reserved_connections')::int AS reserved
"""
_BY_APPLICATION = f"""
SELECT coalesce(nullif(application_name, ''), '(none)') AS application,
       coalesce(datname, '') AS database, count(*) AS connections
FROM pg_stat_activity WHERE {_CLIENTS}
GROUP BY 1, 2 ORDER BY 3 DESC, 1
"""
_STATES = f"""
SELECT coalesce(state, '') AS state, coalesce(wait_event_type, '') AS wait_event_type,
       coalesce(wait_event, '') AS wait_event, count(*) AS sessions
FROM pg_stat_activity WHERE {_CLIENTS}
GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3
"""
_LOCK_WAITS = f"""
SELECT pid, coalesce(application_name, '') AS application, coalesce(datname, '') AS database,
       wait_event, extract(epoch FROM now() - state_change)::float8 AS waiting_s,
       pg_blocking_pids(pid) AS blocked_by
FROM pg_stat_activity WHERE {_CLIENTS} AND wait_event_type = 'Lock'
ORDER BY waiting_s DESC
"""
_IDLE_IN_TRANSACTION = f"""
SELECT pid, coalesce(application_name, '') AS application, coalesce(datname, '') AS database,
       extract(epoch FROM now() - xact_start)::float8 AS transaction_s,
       extract(epoch FROM now() - state_change)::float8 AS idle_s
FROM pg_stat_activity WHERE {_CLIENTS}
  AND state IN ('idle in transaction', 'idle in transaction (aborted)')
ORDER BY transaction_s DESC
"""
_LONG_RUNNING = f"""
SELECT pid, coalesce(application_name, '') AS application, coalesce(datname, '') AS database,
       extract(epoch FROM now() - query_start)::float8 AS running_s,
       coalesce(wait_event_type || ':' || wait_event, '') AS waiting_on
FROM pg_stat_activity
WHERE {_CLIENTS} AND state = 'active' AND now() - query_start > interval '1 second'
ORDER BY running_s DESC LIMIT 10
"""


@dataclass
class DbReport:
    """The statements' picture and the sessions' picture at one moment."""

    statements_note: str | None = None
    statements_since: str | None = None
    by_total: list[dict[str, Any]] = field(default_factory=list)
    by_mean: list[dict[str, Any]] = field(default_factory=list)
    connections: dict[str, Any] = field(default_factory=dict)
    by_application: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    lock_waits: list[dict[str, Any]] = field(default_factory=list)
    idle_in_transaction: list[dict[str, Any]] = field(default_factory=list)
    long_running: list[dict[str, Any]] = field(default_factory=list)


def _ensure_statements_view(conn: psycopg.Connection[dict[str, Any]]) -> str | None:
    """None when pg_stat_statements is readable here; otherwise why not."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone():
        return None
    preload = conn.execute("SELECT current_setting('shared_preload_libraries') AS v").fetchone()
    if preload is None or "pg_stat_statements" not in preload["v"]:
        return (
            "pg_stat_statements is not in shared_preload_libraries "
            "(the managed server from `make services` loads it)"
        )
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.Error as exc:
        return f"cannot create the pg_stat_statements extension ({type(exc).__name__})"
    return None


def collect(
    conn: psycopg.Connection[dict[str, Any]], top: int = 10, min_calls: int = 5
) -> DbReport:
    """Read the report from an autocommit connection (a superuser sees every session)."""
    report = DbReport(statements_note=_ensure_statements_view(conn))
    if report.statements_note is None:
        params = {"top": top, "min_calls": 1}
        report.by_total = conn.execute(
            _STATEMENTS.format(order="total_exec_time"), params
        ).fetchall()
        # A one-off DDL would top the means; rank the statements that recur.
        report.by_mean = conn.execute(
            _STATEMENTS.format(order="mean_exec_time"), params | {"min_calls": min_calls}
        ).fetchall()
        since = conn.execute("SELECT stats_reset::text AS since FROM pg_stat_statements_info")
        row = since.fetchone()
        report.statements_since = row["since"] if row else None
    report.connections = conn.execute(_CONNECTIONS).fetchone() or {}
    report.by_application = conn.execute(_BY_APPLICATION).fetchall()
    report.states = conn.execute(_STATES).fetchall()
    report.lock_waits = conn.execute(_LOCK_WAITS).fetchall()
    report.idle_in_transaction = conn.execute(_IDLE_IN_TRANSACTION).fetchall()
    report.long_running = conn.execute(_LONG_RUNNING).fetchall()
    return report


def _one_line(query: str, width: int = 110) -> str:
    text = re.sub(r"\s+", " ", query).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _statement_rows(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"  {'calls':>9} {'total ms':>11} {'mean ms':>9} {'rows':>10} {'hit %':>6}  statement"]
    for row in rows:
        blocks = row["shared_blks_hit"] + row["shared_blks_read"]
        hit = f"{100 * row['shared_blks_hit'] / blocks:.1f}" if blocks else "-"
        lines.append(
            f"  {row['calls']:>9} {row['total_ms']:>11.1f} {row['mean_ms']:>9.2f} "
            f"{row['rows']:>10} {hit:>6}  {_one_line(row['query'])}"
        )
    return lines


def format_report(report: DbReport) -> str:
    """The report as text for a terminal."""
    out: list[str] = []
    if report.statements_note:
        out.append(f"statements: unavailable — {report.statements_note}")
    else:
        since = f" (since {report.statements_since})" if report.statements_since else ""
        out.append(f"top statements by total time{since}")
        out += _statement_rows(report.by_total)
        out.append("")
        out.append("top statements by mean time (at least 5 calls)")
        out += _statement_rows(report.by_mean) if report.by_mean else ["  (none yet)"]
    used = report.connections.get("used", 0)
    limit = report.connections.get("max", 0)
    reserved = report.connections.get("reserved", 0)
    out += ["", f"connections: {used} of max_connections {limit} ({reserved} reserved)"]
    out += [
        f"  {row['connections']:>5}  {row['application']} @ {row['database']}"
        for row in report.by_application
    ]
    out += ["", "sessions by state and wait event"]
    out += [
        f"  {row['sessions']:>5}  {row['state'] or '-'}"
        + (
            f"  waiting on {row['wait_event_type']}:{row['wait_event']}"
            if row["wait_event"]
            else ""
        )
        for row in report.states
    ]
    out += ["", f"lock waits: {len(report.lock_waits)}"]
    out += [
        f"  pid {row['pid']} ({row['application']} @ {row['database']}) waiting "
        f"{row['waiting_s']:.1f} s on {row['wait_event']}, blocked by {row['blocked_by']}"
        for row in report.lock_waits
    ]
    out += ["", f"idle in transaction: {len(report.idle_in_transaction)}"]
    out += [
        f"  pid {row['pid']} ({row['application']} @ {row['database']}) transaction open "
        f"{row['transaction_s']:.1f} s, idle {row['idle_s']:.1f} s"
        for row in report.idle_in_transaction
    ]
    out += ["", f"active for more than 1 s: {len(report.long_running)}"]
    out += [
        f"  pid {row['pid']} ({row['application']} @ {row['database']}) running "
        f"{row['running_s']:.1f} s"
        + (f", waiting on {row['waiting_on']}" if row["waiting_on"] else "")
        for row in report.long_running
    ]
    return "\n".join(out)


def run(database_url: str, top: int) -> str:
    """Connect, collect and format."""
    with psycopg.connect(
        database_url,
        autocommit=True,
        row_factory=dict_row,
        application_name="patient-search-db-report",
    ) as conn:
        return format_report(collect(conn, top))
