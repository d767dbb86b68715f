"""Database time of POST /v1/patients/match at scale, one request at a time, in-process.

Uses `bench/search_latency.py`'s database (default 1,000,000 patients in one clinic). Each
request is a sampled patient's names with one letter dropped from the surname and its date of
birth, as a clerk might type a returning patient at registration (`fixtures.match_bodies`).
The clinic's stored weights are used when `patient-search duplicates` has run on it.

    .venv/bin/python bench/match_latency.py [--patients 1000000] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import fixtures  # noqa: E402
import relevance  # noqa: E402
import search_latency  # noqa: E402

from patient_search.app import create_app  # noqa: E402
from patient_search.auth.tokens import issue_token  # noqa: E402


class NamedClock(search_latency.StatementClock):
    """The statement clock, also summing each statement's time by name over the whole run."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: dict[str, float] = {}

    def observe(self, name: str, seconds: float, rows: int) -> None:
        super().observe(name, seconds, rows)
        self.by_name[name] = self.by_name.get(name, 0.0) + seconds * 1000


async def measure(
    settings: object, bodies: list[dict[str, str]]
) -> tuple[list[float], list[float], dict[str, float]]:
    app = create_app(settings)  # type: ignore[arg-type]
    token = issue_token(
        settings.effective_jwt_secret,  # type: ignore[attr-defined]
        clinic_id=relevance.CLINIC,
        user_id="bench",
    )
    headers = {"Authorization": f"Bearer {token}"}
    clock = NamedClock()
    db, total = [], []
    async with app.router.lifespan_context(app):
        app.state.services.query_observer = clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for body in bodies[:30]:  # warm-up
                await client.post("/v1/patients/match", json=body, headers=headers)
            clock.take()
            clock.by_name.clear()
            for body in bodies:
                started = time.perf_counter()
                response = await client.post("/v1/patients/match", json=body, headers=headers)
                total.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"HTTP {response.status_code}: {response.text[:200]}")
                db.append(clock.take()[0])
    return db, total, clock.by_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    settings = relevance.prepare_database(args.patients, args.seed, search_latency.DATABASE)
    patients = relevance.load_patients(str(settings.database_url))
    rng = random.Random(args.seed)
    bodies = fixtures.match_bodies(rng.sample(patients, args.requests), rng)
    del patients
    db, total, by_name = asyncio.run(measure(settings, bodies))
    db.sort()
    total.sort()
    print(
        f"/match at {args.patients:,} patients, {len(db)} requests: database p50"
        f" {statistics.median(db):.2f} ms, p95 {db[int(0.95 * len(db))]:.2f} ms;"
        f" whole request p50 {statistics.median(total):.2f} ms,"
        f" p95 {total[int(0.95 * len(total))]:.2f} ms"
    )
    spent = sum(by_name.values()) or 1.0
    for name, ms in sorted(by_name.items(), key=lambda item: -item[1]):
        print(f"  {name}: {ms / len(db):.2f} ms per request ({100 * ms / spent:.0f} %)")


if __name__ == "__main__":
    main()
