"""Database time per search at scale — the measure behind "every shape ≤ 15 ms p95 at 1M".

Seeds one clinic (default 1,000,000 patients) through the real import path, derives the
relevance benchmark's noisy queries from it plus the explicit filters (`phone`, its last 4
digits, `email`, `date_of_birth`, `mrn`, a name with `status`) and 1–2 letter inputs, runs each
through the app in-process, one at a time, and records the time spent in PostgreSQL statements
(the service's own statement timer) next to the whole in-process request time.

    .venv/bin/python bench/search_latency.py [--patients 1000000] [--per-kind 200]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import relevance  # noqa: E402  (a sibling script, not a package)

from patient_search.app import create_app  # noqa: E402
from patient_search.auth.tokens import issue_token  # noqa: E402
from patient_search.search.names import fold  # noqa: E402
from patient_search.settings import Settings  # noqa: E402

DATABASE = "patient_search_scale"


class StatementClock:
    """A query observer that sums statement time until read."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0

    def observe(self, name: str, seconds: float, rows: int) -> None:
        self.seconds += seconds
        self.statements += 1

    def take(self) -> tuple[float, int]:
        taken = (self.seconds * 1000, self.statements)
        self.seconds, self.statements = 0.0, 0
        return taken


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


Shape = tuple[str, dict[str, str]]  # (kind, query parameters)


def _transposed_year(born: dt.date) -> dt.date:
    """`born` with the last two digits of its year swapped (1967 → 1976), or its day moved
    when they are equal (1977): a near miss a clerk makes."""
    tens, units = divmod(born.year % 100, 10)
    if tens == units:
        return born.replace(day=1 if born.day != 1 else 2)
    return dt.date(born.year - born.year % 100 + units * 10 + tens, born.month, min(born.day, 28))


def parameter_shapes(patients: list[relevance.Patient], rng: random.Random, n: int) -> list[Shape]:
    """The explicit filters and the shortest inputs, from `n` random patients each."""
    shapes: list[Shape] = []
    for patient in rng.sample(patients, min(n, len(patients))):
        last = fold(patient.last_name)
        if patient.phones:
            typed = patient.phones[0][0]
            shapes.append(("param_phone", {"phone": typed}))
            digits = "".join(ch for ch in typed if ch.isdigit())
            shapes.append(("param_phone_last4", {"phone": digits[-4:]}))
        if patient.email:
            shapes.append(("param_email", {"email": patient.email}))
        if patient.date_of_birth:
            born = patient.date_of_birth
            shapes.append(("param_dob", {"date_of_birth": born.isoformat()}))
            name = f"{fold(patient.first_name or '')} {last}".strip()
            # The date as evidence: wrong, near (two digits of the year transposed), and
            # right beside a replaced first name; the parameter beside a replaced name.
            wrong = dt.date(1900 + (born.year + 37) % 120, born.month, min(born.day, 28))
            shapes.append(("q_name_wrong_dob", {"q": f"{name} {wrong.isoformat()}"}))
            near = _transposed_year(born)
            shapes.append(("q_name_near_dob", {"q": f"{name} {near.isoformat()}"}))
            replaced = rng.choice(patients).first_name or "alex"
            shapes.append(("q_replaced_first_dob", {"q": f"{fold(replaced)} {last} {born}"}))
            shapes.append(
                (
                    "param_dob_replaced_first",
                    {"q": f"{fold(replaced)} {last}", "date_of_birth": str(born)},
                )
            )
        shapes.append(("param_mrn", {"mrn": patient.mrn}))
        shapes.append(("q_1_letter", {"q": last[:1]}))
        shapes.append(("q_2_letters", {"q": last[:2]}))
        shapes.append(("q_with_status", {"q": last, "status": "inactive"}))
    return shapes


async def measure(settings: Settings, shapes: list[Shape]) -> dict[str, list[tuple]]:
    app = create_app(settings)
    token = issue_token(settings.effective_jwt_secret, clinic_id=relevance.CLINIC, user_id="bench")
    headers = {"Authorization": f"Bearer {token}"}
    clock = StatementClock()
    timings: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    async with app.router.lifespan_context(app):
        app.state.services.query_observer = clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _, warm in shapes[:200]:  # prepared statements and buffer cache, as in service
                await client.get("/v1/patients", params=warm, headers=headers)
            clock.take()
            for kind, params in shapes:
                started = time.perf_counter()
                response = await client.get(
                    "/v1/patients", params={**params, "limit": "20"}, headers=headers
                )
                total_ms = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{kind}: HTTP {response.status_code}")
                db_ms, statements = clock.take()
                timings[kind].append((db_ms, total_ms, statements))
    return timings


def report(timings: dict[str, list[tuple]], patients: int) -> str:
    lines = [
        f"# Search database time — {dt.date.today()}, {patients:,} patients in one clinic",
        "",
        "One request at a time, in-process (no HTTP), after 200 warm-up queries. `db` is the",
        "sum of the request's statement times as the service measures them (round trips",
        "included); `request` is the whole in-process request.",
        "",
        "| kind | n | db p50 ms | db p95 ms | db max ms | request p95 ms | statements (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    every_db: list[float] = []
    for kind, rows in timings.items():
        db = [r[0] for r in rows]
        every_db += db
        lines.append(
            f"| {kind} | {len(rows)} | {statistics.median(db):.2f} | {percentile(db, 0.95):.2f} "
            f"| {max(db):.2f} | {percentile([r[1] for r in rows], 0.95):.2f} "
            f"| {statistics.median([r[2] for r in rows]):.0f} |"
        )
    lines.append(
        f"| **all** | {len(every_db)} | {statistics.median(every_db):.2f} "
        f"| {percentile(every_db, 0.95):.2f} | {max(every_db):.2f} | | |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    settings = relevance.prepare_database(args.patients, args.seed, database=DATABASE)
    relevance.log("loading patients to derive queries")
    patients = relevance.load_patients(str(settings.database_url))
    rng = random.Random(args.seed)
    queries = relevance.derive_queries(patients, rng, args.per_kind)
    shapes = [(q.kind, {"q": q.text}) for q in queries]
    shapes += parameter_shapes(patients, rng, args.per_kind)
    del patients
    kinds = list(dict.fromkeys(kind for kind, _ in shapes))
    rng.shuffle(shapes)  # kinds interleaved, as a front desk sends them
    relevance.log(f"running {len(shapes)} searches")
    measured = asyncio.run(measure(settings, shapes))
    timings = {kind: measured[kind] for kind in kinds if kind in measured}
    text = report(timings, args.patients)
    out = Path(__file__).parent / "results" / f"search-latency-{dt.date.today()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
