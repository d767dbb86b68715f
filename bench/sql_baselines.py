"""The search side by side in SQL: the seed's full-text query and a naive ILIKE, database only.

Both are the relevance benchmark's strings (`relevance.seed_sql`, `relevance.naive_sql`, run
verbatim against `patients`), driven closed-loop by `concurrency` asyncio tasks over a psycopg
pool of as many connections, for `duration_s`, with the same name queries the HTTP search runs
send. They connect as the configured (superuser) URL, so row-level security does not apply —
as in the seed, which had none. Session settings match the service's connections (no parallel
workers) plus `jit = off`, which only slows these short scans.

    .venv/bin/python bench/sql_baselines.py --size 10000 --engine seed --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).parent))
import relevance  # noqa: E402
from dataset import CLINIC  # noqa: E402
from measures import Sample  # noqa: E402

ENGINES = ("seed", "naive")
SESSION_OPTIONS = "-c jit=off -c max_parallel_workers_per_gather=0 -c statement_timeout=60000"


def statement(engine: str, text: str) -> tuple[sql.Composable, dict[str, Any]]:
    """The engine's SQL for one query text, and its parameters."""
    params = {"clinic": CLINIC, "q": text}
    if engine == "seed":
        return relevance.seed_sql(verbatim=True), params
    if engine == "naive":
        tokens = text.replace(",", " ").split()
        return relevance.naive_sql(tokens, verbatim=True), params
    raise ValueError(f"unknown engine {engine!r}")


async def _client(
    pool: AsyncConnectionPool[Any],
    engine: str,
    texts: Sequence[str],
    until: float,
    rng: random.Random,
    out: list[Sample],
) -> None:
    while time.monotonic() < until:
        text = rng.choice(texts)
        query, params = statement(engine, text)
        start = time.time()
        began = time.perf_counter()
        status = 200
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(query, params)
                await cursor.fetchall()
        except Exception:  # a failed statement is an error sample, not the end of the run
            status = 500
        out.append(Sample(start, f"sql.{engine}", (time.perf_counter() - began) * 1000, status))


async def drive(
    url: str, engine: str, texts: Sequence[str], concurrency: int, duration_s: float, seed: int = 0
) -> list[Sample]:
    """Closed loop: `concurrency` clients, each one statement at a time, for `duration_s`."""
    samples: list[Sample] = []
    async with AsyncConnectionPool(
        url,
        min_size=concurrency,
        max_size=concurrency,
        kwargs={"options": SESSION_OPTIONS, "autocommit": True},
        open=False,
    ) as pool:
        await pool.wait(timeout=30)
        until = time.monotonic() + duration_s
        await asyncio.gather(
            *(
                _client(pool, engine, texts, until, random.Random(seed * 1000 + i), samples)
                for i in range(concurrency)
            )
        )
    return samples


def run(
    url: str, engine: str, texts: Sequence[str], concurrency: int, duration_s: float
) -> list[Sample]:
    return asyncio.run(drive(url, engine, texts, concurrency, duration_s))


def main() -> None:
    import fixtures
    from dataset import prepare
    from measures import measured, summarise

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--engine", choices=ENGINES, default="seed")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    dataset = prepare(args.size)
    texts = fixtures.name_queries(fixtures.prepare(dataset))
    samples, window = measured(
        run(dataset.url, args.engine, texts, args.concurrency, args.duration), 1.0
    )
    print(summarise(samples, window))


if __name__ == "__main__":
    main()
