"""GIN `fastupdate` on the name-terms index: what writes save and what searches pay.

On a scratch copy of a benchmark database (default the 100k one; the copy is dropped at the
end), for `fastupdate = off` (as shipped) and `on`, database only, one connection:
1. `--writes` single-row updates that change a patient's name terms, each its own transaction
   (a front-desk edit re-inserts every GIN key of the row);
2. then the GIN search (`search_name_candidates`, two-token names of the benchmark's fixtures)
   while those entries are still where the writes left them — in the pending list when on;
3. then the same searches after `gin_clean_pending_list` (when on).
Reports mean, p50, p95 and p99 per phase, and the pending list's size after the writes.

    .venv/bin/python bench/gin_pending.py [--size 100000] [--writes 3000] [--reads 600]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
import fixtures  # noqa: E402
import relevance  # noqa: E402

from patient_search.search.parse import parse_query  # noqa: E402

INDEX = "patients_name_terms_gin"
SCRATCH = "patient_search_gin_scratch"
CANDIDATES = (
    "SELECT count(*) FROM search_name_candidates(%(terms)s::text[], %(ends)s::int[],"
    " ARRAY['active', 'inactive', 'deceased'], 1000)"
)
# A new term on an existing patient: the row's every GIN key is inserted again (non-HOT).
RENAME = (
    "UPDATE patients SET name_terms = name_terms || %(term)s::text, version = version + 1"
    " WHERE clinic_id = %(clinic)s AND id = %(id)s"
)


def _summary(times_ms: list[float]) -> dict[str, float]:
    ordered = sorted(times_ms)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return {
        "mean": statistics.fmean(ordered),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
    }


def _timed(
    conn: psycopg.Connection[Any], statement: str, params: list[dict[str, Any]]
) -> list[float]:
    out = []
    for values in params:
        began = time.perf_counter()
        conn.execute(statement, values)
        out.append((time.perf_counter() - began) * 1000)
    return out


def _name_searches(fixtures_path: Path, n: int) -> list[dict[str, Any]]:
    payload = fixtures.load(fixtures_path)
    searches = []
    for text in payload["queries"]["exact_full"]:
        tokens = parse_query(text, "US").names[:2]
        if len(tokens) == 2:
            searches.append({"terms": tokens, "ends": [1, 2]})
    return (searches * (n // max(1, len(searches)) + 1))[:n]


def _pending(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "SELECT pending_pages, pending_tuples FROM pgstatginindex(%s::regclass)", (INDEX,)
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure(
    url: str, fastupdate: bool, writes: list[dict[str, Any]], reads: list[dict[str, Any]]
) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        setting = "on" if fastupdate else "off"
        conn.execute(f"ALTER INDEX {INDEX} SET (fastupdate = {setting})")
        conn.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")
        conn.execute("SET jit = off")
        conn.execute("SELECT set_config('app.clinic_id', %s, false)", (dataset.CLINIC,))
        _timed(conn, CANDIDATES, reads[:50])  # plans and buffers warm
        result: dict[str, Any] = {"fastupdate": setting}
        result["writes"] = _summary(_timed(conn, RENAME, writes))
        result["pending_pages"], result["pending_tuples"] = _pending(conn)
        result["reads_after_writes"] = _summary(_timed(conn, CANDIDATES, reads))
        if fastupdate:
            began = time.perf_counter()
            conn.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")
            result["clean_ms"] = (time.perf_counter() - began) * 1000
            result["reads_after_clean"] = _summary(_timed(conn, CANDIDATES, reads))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--reads", type=int, default=600)
    args = parser.parse_args()
    ds = dataset.prepare(args.size)
    data = fixtures.prepare(ds)
    server = dataset._server_url()
    name = sql.Identifier(SCRATCH)
    relevance._admin(server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    relevance._admin(
        server,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(name, sql.Identifier(ds.database)),
    )
    try:
        url = relevance._database_url(server, SCRATCH)
        with psycopg.connect(url) as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM patients WHERE clinic_id = %s ORDER BY md5(id::text) LIMIT %s",
                    (dataset.CLINIC, args.writes * 2),
                )
            ]
        rng = random.Random(7)
        reads = _name_searches(data, args.reads)
        for fastupdate in (False, True):
            picked = rng.sample(ids, args.writes)
            writes = [
                {"term": f"zq{rng.randrange(500)}", "clinic": dataset.CLINIC, "id": patient_id}
                for patient_id in picked
            ]
            result = measure(url, fastupdate, writes, reads)
            print(_render(result), flush=True)
    finally:
        relevance._admin(server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def _render(result: dict[str, Any]) -> str:
    lines = [f"fastupdate = {result['fastupdate']}:"]
    for phase in ("writes", "reads_after_writes", "reads_after_clean"):
        if phase in result:
            s = result[phase]
            lines.append(
                f"  {phase:20s} mean {s['mean']:6.3f}  p50 {s['p50']:6.3f}  p95 {s['p95']:6.3f}"
                f"  p99 {s['p99']:6.3f} ms"
            )
    lines.append(
        f"  pending list after the writes: {result['pending_pages']} pages,"
        f" {result['pending_tuples']} tuples"
    )
    if "clean_ms" in result:
        lines.append(f"  gin_clean_pending_list: {result['clean_ms']:.1f} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
