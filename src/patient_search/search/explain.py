"""`patient-search explain`: every query shape's plan, run as the service's own role.

A shape that reads a clinic's patients (or their postings) with a sequential scan fails the
check: under row-level security that is exactly what a non-leakproof predicate degrades to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from patient_search.db.pool import AppConnection
from patient_search.db.statements import Statement
from patient_search.db.tenant import clinic_transaction
from patient_search.patients.repository import GET_PROFILE
from patient_search.search import repository as search_sql
from patient_search.search.evidence import FREQUENCY_CAP, near_dates
from patient_search.search.names import deletion_keys, phonetic_codes, typo_budget
from patient_search.search.statistics import size_sample

TENANT_TABLES = frozenset(
    {
        "patients",
        "patient_phones",
        "patient_name_terms",
        "search_vocabulary",
        "search_vocabulary_keys",
        "emergency_contacts",
        "insurance_policies",
    }
)
SAMPLE_PATIENT = Statement(
    "explain.sample",
    """
    SELECT p.id, p.mrn, p.first_key, p.last_key, p.email_normalized, p.date_of_birth,
           (SELECT e164 FROM patient_phones ph WHERE ph.clinic_id = p.clinic_id
              AND ph.patient_id = p.id AND e164 IS NOT NULL LIMIT 1) AS phone
    FROM patients p WHERE p.deleted_at IS NULL AND p.first_key <> '' AND p.last_key <> ''
    ORDER BY p.id LIMIT 1
    """,
)


@dataclass(frozen=True, slots=True)
class ShapeReport:
    """The plan summary of one query shape."""

    shape: str
    milliseconds: float
    top_node: str
    indexes: list[str]
    sequential_scans: list[str]
    buffers_hit: int
    buffers_read: int

    @property
    def ok(self) -> bool:
        """No sequential scan of a tenant table."""
        return not self.sequential_scans


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


# A sequential scan over a handful of rows (an empty side table) is what the planner rightly
# picks; one that reads more than this many rows is a clinic-wide scan.
SMALL_SCAN_ROWS = 1000


def _scans_a_tenant_table(node: dict[str, Any]) -> bool:
    if node["Node Type"] != "Seq Scan" or node.get("Relation Name") not in TENANT_TABLES:
        return False
    rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
    return bool(rows * node.get("Actual Loops", 1) > SMALL_SCAN_ROWS or "Actual Rows" not in node)


def summarize(shape: str, plan: dict[str, Any]) -> ShapeReport:
    """Reduce an EXPLAIN (FORMAT JSON) document to what an operator needs to see."""
    root = plan["Plan"]
    nodes = list(_walk(root))
    return ShapeReport(
        shape=shape,
        milliseconds=float(plan.get("Execution Time", 0.0)),
        top_node=root["Node Type"],
        indexes=sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
        sequential_scans=sorted({n["Relation Name"] for n in nodes if _scans_a_tenant_table(n)}),
        buffers_hit=int(root.get("Shared Hit Blocks", 0)),
        buffers_read=int(root.get("Shared Read Blocks", 0)),
    )


def _shapes(sample: dict[str, Any]) -> list[tuple[str, Statement, dict[str, Any]]]:
    first, last = sample["first_key"].split()[0], sample["last_key"].split()[0]
    keys = sorted(phonetic_codes(last) | deletion_keys(last, typo_budget(last)))
    statuses = ["active", "inactive", "deceased"]
    born = sample["date_of_birth"] or dt.date(1970, 1, 1)
    today = dt.date.today()
    return [
        ("patient.get", GET_PROFILE, {"id": sample["id"]}),
        (
            "search.identifiers (mrn, email, phone, dob, postal code)",
            search_sql.IDENTIFIERS,
            {
                "mrns": [sample["mrn"]],
                "emails": [sample["email_normalized"] or ""],
                "phones": [sample["phone"] or ""],
                "dates": [sample["date_of_birth"] or dt.date(1970, 1, 1)],
                "postal_codes": ["90210"],
            },
        ),
        (
            "search.phone_suffix",
            search_sql.PHONE_SUFFIX,
            {
                "lo": (sample["phone"] or "0134")[-4:][::-1],
                "hi": (sample["phone"] or "0134")[-4:][::-1] + search_sql.TOP,
            },
        ),
        (
            "search.vocabulary",
            search_sql.VOCABULARY,
            {
                "keys": keys,
                "prefixes": [first[:3], last[:3]],
                "uppers": [first[:3] + search_sql.TOP, last[:3] + search_sql.TOP],
                "per_prefix": 64,
            },
        ),
        (
            "search.name_candidates",
            search_sql.NAME_CANDIDATES,
            {
                "terms": [first, last],
                "ends": [1, 2],
                "statuses": statuses,
                "cap": 1000,
            },
        ),
        (
            "search.term_pages",
            search_sql.TERM_PAGES,
            search_sql.term_pages_params(
                [search_sql.TermRequest(last, 0), search_sql.TermRequest(first, 1)], 41
            ),
        ),
        (
            "search.prefix_page (1 letter)",
            search_sql.PREFIX_PAGE,
            search_sql.prefix_page_params(last[:1], last[:1], search_sql.END_BOUND, 41),
        ),
        (
            "search.prefix_page (3 letters)",
            search_sql.PREFIX_PAGE,
            search_sql.prefix_page_params(last[:3], last[:3], search_sql.END_BOUND, 41),
        ),
        (
            "search.count_term_matches",
            search_sql.COUNT_TERM_MATCHES,
            {
                "terms": [last],
                "lo": last,
                "hi": last + search_sql.TOP,
                "cap": 1001,
            },
        ),
        ("search.summaries", search_sql.SUMMARIES, {"ids": [sample["id"]], "statuses": statuses}),
        ("search.name_keys", search_sql.NAME_KEYS, {"ids": [sample["id"]], "statuses": statuses}),
        (
            "search.term_frequencies",
            search_sql.TERM_FREQUENCIES,
            {"terms": [first, last], "cap": FREQUENCY_CAP},
        ),
        ("search.born_on_sample", search_sql.BORN_ON_SAMPLE, {"dates": size_sample(today)}),
        (
            "search.dob_candidates (typed and near dates)",
            search_sql.DOB_CANDIDATES,
            search_sql.dob_params(
                search_sql.DobProbe(
                    exact=[born],
                    near=sorted(near_dates(born)),
                    terms=[first, last],
                    cap=500,
                    exact_cap=50,
                ),
                statuses,
            ),
        ),
    ]


async def explain_all(
    pool: AsyncConnectionPool[AppConnection], conninfo: str, clinic_id: str
) -> list[ShapeReport]:
    """EXPLAIN (ANALYZE, BUFFERS) every shape as the service role, on the clinic's own data."""
    async with clinic_transaction(pool, clinic_id, "read") as conn:
        cursor = await conn.execute(SAMPLE_PATIENT.sql)
        sample = await cursor.fetchone()
    if sample is None:
        raise LookupError(f"clinic {clinic_id} has no patients to sample")
    reports = []
    for shape, statement, params in _shapes(sample):
        async with clinic_transaction(pool, clinic_id, "read") as conn:
            query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + (
                statement.sql if isinstance(statement.sql, sql.Composed) else sql.SQL(statement.sql)
            )
            cursor = await conn.execute(query, params)
            row = await cursor.fetchone()
            assert row is not None
            reports.append(summarize(shape, row["QUERY PLAN"][0]))
    reports.append(await _explain_definer_query(conninfo, clinic_id, sample))
    return reports


async def _explain_definer_query(
    conninfo: str, clinic_id: str, sample: dict[str, Any]
) -> ShapeReport:
    """The query inside search_name_candidates(), as its owner runs it (plpgsql hides it).

    Uses a connection of its own: switching roles on a pooled one could leak the switch.
    """
    first, last = sample["first_key"].split()[0], sample["last_key"].split()[0]
    async with await AsyncConnection.connect(conninfo) as conn:
        await conn.execute("SET ROLE patient_search_definer")
        cursor = await conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT p.id FROM patients p"
            " WHERE p.clinic_id = %(clinic)s AND p.deleted_at IS NULL"
            " AND p.status = ANY(%(statuses)s)"
            " AND clinic_terms(p.clinic_id, p.name_terms) && clinic_terms(%(clinic)s, %(a)s)"
            " AND clinic_terms(p.clinic_id, p.name_terms) && clinic_terms(%(clinic)s, %(b)s)"
            " LIMIT 1000",
            {
                "clinic": clinic_id,
                "statuses": ["active", "inactive", "deceased"],
                "a": [first],
                "b": [last],
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return summarize("search_name_candidates() inner query", row[0][0])


def format_reports(reports: list[ShapeReport]) -> str:
    """A fixed-width table of the reports."""
    lines = [f"{'shape':48} {'ms':>8} {'buffers':>9}  plan"]
    for r in reports:
        verdict = "OK " if r.ok else "SEQ"
        plan = f"{r.top_node}; indexes: {', '.join(r.indexes) or '-'}"
        if r.sequential_scans:
            plan += f"; SEQUENTIAL SCAN of {', '.join(r.sequential_scans)}"
        lines.append(
            f"{r.shape:48} {r.milliseconds:8.3f} {r.buffers_hit + r.buffers_read:9d}  "
            f"{verdict} {plan}"
        )
    return "\n".join(lines)
