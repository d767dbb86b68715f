"""What PostgreSQL itself timed of the profile lookup over a run (`pg_stat_statements`).

The service's statement histogram times a statement from `execute` to its last row in the
worker: on two shared cores that includes the wait for the worker's event loop, busy with other
requests, to pick the answer up. PostgreSQL's own execution time is the database's part alone;
`pg_stat_statements` keeps its mean and maximum per statement (no percentiles: the maximum
bounds them all).
"""

from __future__ import annotations

from typing import Any

import psycopg

from patient_search.patients.repository import GET_PROFILE

# PostgreSQL records the text with parameters and constants as $n: match on its last line
# (psycopg sends the named parameter as $1), which only the profile statement ends with.
PROFILE_QUERY_END = str(GET_PROFILE.sql).replace("%(id)s", "$1").splitlines()[-1]


def reset(url: str) -> bool:
    """Forget this database's statement statistics; False when the extension is unavailable."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute(
                "SELECT pg_stat_statements_reset(0, "
                "(SELECT oid FROM pg_database WHERE datname = current_database()), 0)"
            )
    except psycopg.Error:
        return False
    return True


def profile_reads(url: str) -> dict[str, Any] | None:
    """Calls and execution time (ms) of the profile lookup since `reset`; None if unrecorded."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                """
                SELECT sum(calls)::bigint, sum(total_exec_time) / nullif(sum(calls), 0),
                       max(max_exec_time)
                FROM pg_stat_statements
                WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND query LIKE 'SELECT%%' AND right(query, length(%s)) = %s
                """,
                [PROFILE_QUERY_END, PROFILE_QUERY_END],
            ).fetchone()
    except psycopg.Error:
        return None
    if row is None or not row[0]:
        return None
    calls, mean_ms, max_ms = row
    return {"calls": int(calls), "mean_ms": float(mean_ms), "max_ms": float(max_ms)}
