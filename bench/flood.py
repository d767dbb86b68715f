"""One clinic floods the server with the costliest searches it can type; another clinic's
front desk searches as usual. How much does the flood move the other clinic's latency?

A real server (`patient-search serve`, 2 workers, cache off so every search reaches the
database) on `bench/search_latency.py`'s database: the flooding clinic is its 1M-patient
`relevance`; the quiet clinic is `clinic-1`, seeded here with 100,000 patients if empty.
The quiet desk is 5 users, each searching a typical name every 0.2 s; the flood is 40 users
in a closed loop of `bench/search_cost.py`'s hostile 200-character queries. Each phase runs
for --seconds. Run once with the service's defaults (per-user rate limit, per-clinic search
slots) and once with both off, to show what the protections buy.

    .venv/bin/python bench/flood.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
import relevance  # noqa: E402
import search_cost  # noqa: E402
import search_latency  # noqa: E402
from server import Server, ServerConfig  # noqa: E402

from patient_search import cli  # noqa: E402
from patient_search.auth.tokens import issue_token  # noqa: E402

QUIET_CLINIC = "clinic-1"
QUIET_PATIENTS = 100_000
QUIET_USERS = 5
QUIET_PACING_S = 0.2
FLOOD_USERS = 40
SLOTS = "PATIENT_SEARCH_SEARCH_CONCURRENCY_PER_CLINIC"
UNPROTECTED = (("PATIENT_SEARCH_SEARCH_RATE_PER_MINUTE", "0"), (SLOTS, "0"))
PROTECTED = (
    ("PATIENT_SEARCH_SEARCH_RATE_PER_MINUTE", "600"),
    ("PATIENT_SEARCH_SEARCH_RATE_BURST", "20"),
)


def _token(server: Server, clinic: str, user: str) -> dict[str, str]:
    token = issue_token(server.secret, clinic_id=clinic, user_id=user, ttl_s=3600)
    return {"Authorization": f"Bearer {token}"}


async def _quiet_desk(
    server: Server, texts: list[str], seconds: float, latencies: list[float]
) -> None:
    async def user(n: int) -> None:
        headers = _token(server, QUIET_CLINIC, f"desk-{n}")
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=15) as c:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await c.get("/v1/patients", params={"q": rng.choice(texts)})
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(QUIET_PACING_S)

    await asyncio.gather(*(user(n) for n in range(QUIET_USERS)))


async def _flood(server: Server, seconds: float, statuses: Counter[int]) -> None:
    async def user(n: int) -> None:
        headers = _token(server, relevance.CLINIC, f"flood-{n}")
        rng = random.Random(1000 + n)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=15) as c:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                q = rng.choice(list(search_cost.hostile_shapes(rng).values()))
                statuses[(await c.get("/v1/patients", params={"q": q})).status_code] += 1

    await asyncio.gather(*(user(n) for n in range(FLOOD_USERS)))


def _p(values: list[float], share: float) -> float:
    return search_latency.percentile(values, share) if values else float("nan")


async def _phase(server: Server, texts: list[str], seconds: float, flood: bool) -> str:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    tasks = [_quiet_desk(server, texts, seconds, latencies)]
    if flood:
        tasks.append(_flood(server, seconds, statuses))
    await asyncio.gather(*tasks)
    flood_text = f"; flood answers {dict(sorted(statuses.items()))}" if flood else ""
    return (
        f"quiet clinic p50 {_p(latencies, 0.5):.1f} ms, p95 {_p(latencies, 0.95):.1f} ms"
        f" ({len(latencies)} searches){flood_text}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--slots", type=int, help="only the protected run, with this many slots")
    args = parser.parse_args()
    settings = relevance.prepare_database(1_000_000, 11, search_latency.DATABASE)
    cli.seed(settings, QUIET_PATIENTS, 1, 7, if_empty=True)
    url = str(settings.database_url)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            relevance.PATIENT_ROWS_SQL + " ORDER BY p.mrn LIMIT 20000", {"clinic": QUIET_CLINIC}
        ).fetchall()
    patients = [relevance.patient_from_row(row) for row in rows]
    queries = relevance.derive_queries(patients, random.Random(3), 40)
    texts = [q.text for q in queries if q.kind in relevance.NAME_KINDS]
    runs = [("defaults", PROTECTED), ("unprotected", UNPROTECTED)]
    if args.slots:
        runs = [(f"{args.slots} slots", (*PROTECTED, (SLOTS, str(args.slots))))]
    for label, extra in runs:
        config = ServerConfig(label=f"flood-{label}", cache_enabled=False, extra=extra)
        with Server(config, url, QUIET_CLINIC) as server:
            alone = asyncio.run(_phase(server, texts, args.seconds, flood=False))
            flooded = asyncio.run(_phase(server, texts, args.seconds, flood=True))
        print(f"{label}: alone: {alone}")
        print(f"{label}: flooded: {flooded}")


if __name__ == "__main__":
    main()
