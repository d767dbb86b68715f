"""Compare psycopg 3 + psycopg_pool with asyncpg + asyncpg.Pool for patient-search.

What it does:

1. Builds (if missing) a scratch schema resembling the service: ``patients`` and
   ``patient_terms`` under FORCE'd row-level security keyed on the ``app.clinic_id``
   setting, read through a NOLOGIN role ``bench_app`` that every pooled connection
   switches to once (``SET ROLE``) when it is created.
2. Checks every driver variant returns the same rows as a superuser reference query,
   that RLS hides other clinics, and that the role survives pool release.
3. Drives each variant with uvloop: a fixed number of requests per cell after warm-up,
   at each concurrency level (N asyncio tasks sharing one pool of min 5 / max 20),
   repeated ``--repeats`` times with the variants interleaved; prints medians.
4. Probes pool behaviour that matters for answering 503 quickly: exhausted pool,
   unreachable server, and a server that disappears while the pool is up.

A "request" is one transaction: ``set_config('app.clinic_id', $1, true)`` + one query.
Prepared statements: psycopg's default (server-side prepare after 5 executions of the
same query on a connection, ``prepare_threshold=5``); asyncpg's default (always
prepared, statement cache of 100 per connection).

Run:
    .venv/bin/python bench/driver_compare.py \
        --dsn postgresql://postgres@127.0.0.1:5432/driver_bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import psycopg_pool
import uvloop
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

# --- service pool settings -------------------------------------------------------------
POOL_MIN = 5
POOL_MAX = 20
ACQUIRE_TIMEOUT = 30.0
MAX_IDLE = 600.0

# --- scratch data ----------------------------------------------------------------------
APP_ROLE = "bench_app"
MAIN_CLINIC = "clinic-main"
OTHER_CLINICS = ("clinic-b", "clinic-c", "clinic-d")
N_MAIN = 200_000
N_OTHER = 300  # per other clinic
DATA_VERSION = 1
SEED = 0.42
RANDOM_PAGE_COST = 1.1  # set on the scratch database only

FIRST_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily "
    "Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Dorothy George Melissa "
    "Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon Jeffrey Laura Ryan Cynthia "
    "Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda Larry "
    "Pamela Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory "
    "Christine Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine "
    "Dennis Maria Jerry Heather Tyler Diane Aaron Ruth Jose Julie Adam Olivia Nathan Joyce "
    "Henry Virginia Douglas Victoria Zachary Kelly Peter Lauren Kyle Christina Noah Joan "
    "Ethan Evelyn Jeremy Judith Walter Megan Christian Andrea Keith Cheryl Roger Hannah "
    "Terry Jacqueline Austin Martha Sean Gloria Gerald Teresa Carl Ann Harold Sara Dylan "
    "Madison Arthur Frances Lawrence Kathryn Jordan Janice Jesse Jean Bryan Abigail Billy "
    "Alice Bruce Judy Gabriel Sophia Joe Grace Logan Denise Albert Amber Willie Doris Alan "
    "Marilyn Eugene Danielle Russell Beverly Vincent Isabella Philip Theresa Bobby Diana "
    "Johnny Natalie Bradley Brittany Roy Charlotte Ralph Marie Mary-Ann Jean-Luc"
).split()

LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart "
    "Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed "
    "Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray "
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales "
    "Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds "
    "Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar "
    "Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington "
    "Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson "
    "Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes "
    "Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice "
    "Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant "
    "Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley "
    "Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado "
    "Ray Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis "
    "Carpenter Lawrence Sandoval Smith-Jones Garcia-Lopez O'Brien"
).split()

# --- SQL -------------------------------------------------------------------------------
COLUMNS = "clinic_id, id, mrn, first_name, last_name, date_of_birth, status, version"
P_COLUMNS = ", ".join(f"p.{c.strip()}" for c in COLUMNS.split(","))

SET_CLINIC = "SELECT set_config('app.clinic_id', $1, true)"
LOOKUP = f"SELECT {COLUMNS} FROM patients WHERE id = $1"
SEARCH = (
    f"SELECT {P_COLUMNS} FROM patient_terms t"
    " JOIN patients p ON p.clinic_id = t.clinic_id AND p.id = t.patient_id"
    " WHERE t.term >= $1 AND t.term < $2"
    " ORDER BY p.last_name, p.first_name LIMIT 20"
)
# One-statement variants: the setting is made in a CTE that the main query joins to,
# so the whole request is a single statement (its own implicit transaction).
CTE_PREFIX = "WITH cfg AS MATERIALIZED (SELECT set_config('app.clinic_id', $1, true) AS c) "
LOOKUP_CTE = CTE_PREFIX + f"SELECT {P_COLUMNS} FROM cfg CROSS JOIN patients p WHERE p.id = $2"
SEARCH_CTE = (
    CTE_PREFIX + f"SELECT {P_COLUMNS} FROM cfg CROSS JOIN patient_terms t"
    " JOIN patients p ON p.clinic_id = t.clinic_id AND p.id = t.patient_id"
    " WHERE t.term >= $2 AND t.term < $3"
    " ORDER BY p.last_name, p.first_name LIMIT 20"
)


CTE_SEARCH_SKIP = (
    "planner sees app.clinic_id unset at plan time (the CTE has not run yet), estimates"
    " 1 row and picks a nested loop with a join filter: minutes per query"
)


def to_pyformat(query: str) -> str:
    """Turn ``$n`` placeholders into psycopg's ``%s`` (queries use each $n once, in order)."""
    out = query
    for n in range(9, 0, -1):
        out = out.replace(f"${n}", "%s")
    return out


DDL = f"""
DROP TABLE IF EXISTS bench_meta, patient_terms, patients;
CREATE TABLE patients (
    clinic_id     text NOT NULL,
    id            uuid NOT NULL,
    mrn           text NOT NULL,
    first_name    text NOT NULL,
    last_name     text NOT NULL,
    date_of_birth date NOT NULL,
    status        text NOT NULL,
    version       int  NOT NULL DEFAULT 1,
    PRIMARY KEY (clinic_id, id)
);
CREATE TABLE patient_terms (
    clinic_id  text NOT NULL,
    term       text COLLATE "C" NOT NULL,
    patient_id uuid NOT NULL,
    PRIMARY KEY (clinic_id, term, patient_id)
);
ALTER TABLE patients ENABLE ROW LEVEL SECURITY;
ALTER TABLE patients FORCE ROW LEVEL SECURITY;
ALTER TABLE patient_terms ENABLE ROW LEVEL SECURITY;
ALTER TABLE patient_terms FORCE ROW LEVEL SECURITY;
CREATE POLICY clinic_isolation ON patients
    USING (clinic_id = current_setting('app.clinic_id', true));
CREATE POLICY clinic_isolation ON patient_terms
    USING (clinic_id = current_setting('app.clinic_id', true));
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO {APP_ROLE};
GRANT SELECT ON patients, patient_terms TO {APP_ROLE};
"""

INSERT_PATIENTS = """
INSERT INTO patients (clinic_id, id, mrn, first_name, last_name, date_of_birth, status)
SELECT c.clinic,
       md5(c.clinic || ':' || g)::uuid,
       'MRN' || lpad(g::text, 8, '0'),
       (%(first)s::text[])[1 + floor(random() * cardinality(%(first)s::text[]))::int],
       (%(last)s::text[])[1 + floor(random() * cardinality(%(last)s::text[]))::int],
       date '1925-01-01' + floor(random() * 36500)::int,
       (ARRAY['active', 'active', 'active', 'inactive', 'deceased'])[1 + floor(random() * 5)::int]
FROM unnest(%(clinics)s::text[], %(counts)s::int[]) AS c(clinic, n)
CROSS JOIN LATERAL generate_series(1, c.n) AS g
"""

INSERT_TERMS = """
INSERT INTO patient_terms (clinic_id, term, patient_id)
SELECT DISTINCT p.clinic_id, tok, p.id
FROM patients p,
     LATERAL regexp_split_to_table(lower(p.first_name || ' ' || p.last_name), '[^a-z]+') AS tok
WHERE tok <> ''
"""


def admin_dsn(dsn: str) -> str:
    """Same server, maintenance database ``postgres``."""
    return make_conninfo(dsn, dbname="postgres")


def db_name(dsn: str) -> str:
    name = conninfo_to_dict(dsn).get("dbname")
    if not isinstance(name, str) or not name:
        raise SystemExit("--dsn must name a database, e.g. .../driver_bench")
    return name


async def ensure_database(dsn: str, rebuild: bool) -> None:
    name = db_name(dsn)
    async with await psycopg.AsyncConnection.connect(admin_dsn(dsn), autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await cur.fetchone() is None:
            print(f"creating database {name}")
            await conn.execute(f'CREATE DATABASE "{name}"')
        # Scratch-database setting (not server-wide): with the default 4.0 the search plans a
        # parallel seq scan of patients + hash join (~130 ms) instead of a nested loop.
        await conn.execute(f'ALTER DATABASE "{name}" SET random_page_cost = {RANDOM_PAGE_COST}')

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        if not rebuild:
            cur = await conn.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
            row = await cur.fetchone()
            if row and row[0]:
                cur = await conn.execute("SELECT version FROM bench_meta")
                meta = await cur.fetchone()
                if meta and meta[0] == DATA_VERSION:
                    return
        print(f"building scratch data ({N_MAIN} patients in {MAIN_CLINIC}) ...", flush=True)
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.execute(DDL)
            await conn.execute("SELECT setseed(%s)", (SEED,))
            await conn.execute(
                INSERT_PATIENTS,
                {
                    "first": FIRST_NAMES,
                    "last": LAST_NAMES,
                    "clinics": [MAIN_CLINIC, *OTHER_CLINICS],
                    "counts": [N_MAIN, *([N_OTHER] * len(OTHER_CLINICS))],
                },
            )
            await conn.execute(INSERT_TERMS)
        await conn.execute("VACUUM (ANALYZE) patients")
        await conn.execute("VACUUM (ANALYZE) patient_terms")
        await conn.execute("CREATE TABLE bench_meta (version int NOT NULL)")
        await conn.execute("INSERT INTO bench_meta VALUES (%s)", (DATA_VERSION,))
        print(f"  built in {time.perf_counter() - t0:.1f}s")


async def drop_database(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(admin_dsn(dsn), autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name(dsn)}" WITH (FORCE)')
        await conn.execute(f"DROP ROLE IF EXISTS {APP_ROLE}")
    print(f"dropped database {db_name(dsn)} and role {APP_ROLE}")


# --- workload --------------------------------------------------------------------------
def prefix_range(prefix: str) -> tuple[str, str]:
    """``[prefix, prefix-with-last-char+1)``: every term starting with prefix (C collation)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class Workload:
    ids: list[uuid.UUID]
    ranges: list[tuple[str, str]]
    avg_terms_per_prefix: float
    terms_total: int


async def load_workload(dsn: str, size: int = 20_000) -> Workload:
    """Sample lookup ids and search prefixes (superuser: RLS does not apply here)."""
    rng = random.Random(7)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT id, first_name, last_name FROM patients WHERE clinic_id = %s"
            " ORDER BY md5(id::text) LIMIT %s",
            (MAIN_CLINIC, size),
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT left(term, 3), count(*) FROM patient_terms WHERE clinic_id = %s GROUP BY 1",
            (MAIN_CLINIC,),
        )
        per_prefix: dict[str, int] = dict(await cur.fetchall())
        cur = await conn.execute("SELECT count(*) FROM patient_terms")
        total_row = await cur.fetchone()
    ids = [r[0] for r in rows]
    prefixes: list[str] = []
    for _, first, last in rows:
        tokens = [t for t in f"{first} {last}".lower().replace("-", " ").split() if len(t) >= 3]
        tokens = [t for t in tokens if t.isalpha()]
        prefixes.append(rng.choice(tokens)[:3])
    rng.shuffle(ids)
    rng.shuffle(prefixes)
    avg = statistics.fmean(per_prefix.get(p, 0) for p in prefixes)
    return Workload(ids, [prefix_range(p) for p in prefixes], avg, total_row[0] if total_row else 0)


# --- driver variants -------------------------------------------------------------------
class Runner:
    """One driver + pool configuration; each call is one request (one transaction)."""

    name: str
    round_trips: str

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def lookup(self, clinic: str, patient_id: uuid.UUID) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def search(self, clinic: str, lo: str, hi: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def whoami(self) -> str:
        raise NotImplementedError

    def skip_reason(self, shape: str) -> str | None:
        """Why this variant does not run `shape` (None = it runs)."""
        if shape == "search" and getattr(self, "mode", "") == "cte":
            return CTE_SEARCH_SKIP
        return None


class PsycopgRunner(Runner):
    """psycopg 3 + psycopg_pool.AsyncConnectionPool.

    modes:
      tx          default (non-autocommit) connection: BEGIN, set_config, query, COMMIT
      pipeline-tx default connection, set_config + query inside ``conn.pipeline()``
      pipeline    autocommit connection, set_config + query inside ``conn.pipeline()``;
                  both run in the implicit transaction that lasts until the Sync
      cte         autocommit connection, single CTE statement (same SQL as asyncpg cte)
    """

    ROUND_TRIPS = {"tx": "4", "pipeline-tx": "3", "pipeline": "1", "cte": "1"}

    def __init__(self, dsn: str, mode: str) -> None:
        self.dsn = dsn
        self.mode = mode
        self.name = f"psycopg {mode}"
        self.round_trips = self.ROUND_TRIPS[mode]
        self.autocommit = mode in ("pipeline", "cte")
        self.pool: AsyncConnectionPool | None = None
        self._set = to_pyformat(SET_CLINIC)
        self._lookup = to_pyformat(LOOKUP)
        self._search = to_pyformat(SEARCH)
        self._lookup_cte = to_pyformat(LOOKUP_CTE)
        self._search_cte = to_pyformat(SEARCH_CTE)

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f"SET ROLE {APP_ROLE}")
        if not conn.autocommit:
            await conn.commit()

    async def open(self) -> None:
        self.pool = AsyncConnectionPool(
            self.dsn,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=ACQUIRE_TIMEOUT,
            max_idle=MAX_IDLE,
            kwargs={"autocommit": self.autocommit},
            configure=self._configure,
            open=False,
            name=self.name,
        )
        await self.pool.open(wait=True, timeout=ACQUIRE_TIMEOUT)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _request(
        self, clinic: str, query: str, cte_query: str, params: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            if self.mode == "tx":
                await conn.execute(self._set, (clinic,))
                cur = await conn.execute(query, params)
                return await cur.fetchall()
            if self.mode in ("pipeline", "pipeline-tx"):
                async with conn.pipeline():
                    await conn.execute(self._set, (clinic,))
                    cur = await conn.execute(query, params)
                # leaving the pipeline sends Sync and collects every result
                return await cur.fetchall()
            cur = await conn.execute(cte_query, (clinic, *params))
            return await cur.fetchall()

    async def lookup(self, clinic: str, patient_id: uuid.UUID) -> list[tuple[Any, ...]]:
        return await self._request(clinic, self._lookup, self._lookup_cte, (patient_id,))

    async def search(self, clinic: str, lo: str, hi: str) -> list[tuple[Any, ...]]:
        return await self._request(clinic, self._search, self._search_cte, (lo, hi))

    async def whoami(self) -> str:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT current_user")
            row = await cur.fetchone()
            return str(row[0]) if row else ""


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Replacement for asyncpg's release-time reset query (see AsyncpgRunner)."""


class AsyncpgRunner(Runner):
    """asyncpg + asyncpg.Pool.

    modes:
      tx   ``conn.transaction()``: BEGIN, set_config, query, COMMIT
      cte  single CTE statement (its own implicit transaction)
    reset=False replaces the release-time ``Connection.reset()`` (one extra round trip:
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL) with a no-op.
    """

    def __init__(self, dsn: str, mode: str, reset: bool = True) -> None:
        self.dsn = dsn
        self.mode = mode
        self.reset = reset
        self.name = f"asyncpg {mode}" + ("" if reset else " noreset")
        base = 4 if mode == "tx" else 1
        self.round_trips = f"{base}+1" if reset else str(base)
        self.pool: asyncpg.Pool | None = None

    @staticmethod
    async def _init(conn: asyncpg.Connection) -> None:
        await conn.execute(f"SET ROLE {APP_ROLE}")

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            max_inactive_connection_lifetime=MAX_IDLE,
            init=self._init,
            reset=None if self.reset else _no_reset,
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _request(
        self, clinic: str, query: str, cte_query: str, params: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        assert self.pool is not None
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            if self.mode == "tx":
                async with conn.transaction():
                    await conn.execute(SET_CLINIC, clinic)
                    rows = await conn.fetch(query, *params)
            else:
                rows = await conn.fetch(cte_query, clinic, *params)
        return [tuple(r) for r in rows]

    async def lookup(self, clinic: str, patient_id: uuid.UUID) -> list[tuple[Any, ...]]:
        return await self._request(clinic, LOOKUP, LOOKUP_CTE, (patient_id,))

    async def search(self, clinic: str, lo: str, hi: str) -> list[tuple[Any, ...]]:
        return await self._request(clinic, SEARCH, SEARCH_CTE, (lo, hi))

    async def whoami(self) -> str:
        assert self.pool is not None
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            return str(await conn.fetchval("SELECT current_user"))


def make_runner(dsn: str, variant: str) -> Runner:
    driver, _, rest = variant.partition(":")
    if driver == "psycopg":
        return PsycopgRunner(dsn, rest)
    if driver == "asyncpg":
        mode, _, flag = rest.partition("+")
        return AsyncpgRunner(dsn, mode, reset=flag != "noreset")
    raise SystemExit(f"unknown variant {variant!r}")


VARIANTS = (
    "psycopg:tx",
    "psycopg:pipeline-tx",
    "psycopg:pipeline",
    "psycopg:cte",
    "asyncpg:tx",
    "asyncpg:tx+noreset",
    "asyncpg:cte",
    "asyncpg:cte+noreset",
)


# --- correctness checks ----------------------------------------------------------------
async def verify(runner: Runner, dsn: str, work: Workload) -> list[str]:
    """Problems found (empty list = OK). Each check runs 12x: past psycopg's prepare
    threshold and PostgreSQL's switch from custom to generic plans (after 5)."""
    problems: list[str] = []
    lookup_ref = to_pyformat(f"SELECT {COLUMNS} FROM patients WHERE clinic_id = $1 AND id = $2")
    search_ref = to_pyformat(
        f"SELECT {P_COLUMNS} FROM patient_terms t"
        " JOIN patients p ON p.clinic_id = t.clinic_id AND p.id = t.patient_id"
        " WHERE t.clinic_id = $1 AND t.term >= $2 AND t.term < $3"
        " ORDER BY p.last_name, p.first_name"
    )
    who = await runner.whoami()
    if who != APP_ROLE:
        problems.append(f"current_user is {who!r}, expected {APP_ROLE!r}")
    async with await psycopg.AsyncConnection.connect(dsn) as ref:
        for pid in work.ids[:3]:
            cur = await ref.execute(lookup_ref, (MAIN_CLINIC, pid))
            expected = [tuple(r) for r in await cur.fetchall()]
            for _ in range(12):
                got = await runner.lookup(MAIN_CLINIC, pid)
                if got != expected:
                    problems.append(f"lookup {pid}: got {len(got)} rows, expected {expected}")
                    break
                other = await runner.lookup(OTHER_CLINICS[0], pid)
                if other:
                    problems.append(f"lookup {pid} as {OTHER_CLINICS[0]}: RLS leaked {other}")
                    break
        search_ranges = [] if runner.skip_reason("search") else work.ranges[:3]
        for lo, hi in search_ranges:
            for clinic in (MAIN_CLINIC, OTHER_CLINICS[0]):
                cur = await ref.execute(search_ref, (clinic, lo, hi))
                expected = [tuple(r) for r in await cur.fetchall()][:20]
                want = [(r[0], r[4], r[3]) for r in expected]  # clinic, last, first
                for _ in range(12):
                    rows = await runner.search(clinic, lo, hi)
                    got = [(r[0], r[4], r[3]) for r in rows]
                    if got != want:
                        problems.append(
                            f"search {lo!r} as {clinic}: got {len(got)} rows"
                            f" (clinics {sorted({g[0] for g in got})}), expected {len(want)}"
                        )
                        break
    for _ in range(POOL_MAX + 5):  # cycle through connections: role must survive release
        who = await runner.whoami()
        if who != APP_ROLE:
            problems.append(f"after release current_user is {who!r}")
            break
    return problems


# --- load driver -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    idx = max(0, min(len(sorted_ns) - 1, int(q * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[idx] / 1e6


async def drive(
    request: Callable[[int], Awaitable[object]], n: int, concurrency: int, offset: int = 0
) -> RunResult:
    """Run n requests with `concurrency` tasks pulling from a shared counter."""
    latencies = [0] * n
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            t0 = time.perf_counter_ns()
            await request(offset + i)
            latencies[i] = time.perf_counter_ns() - t0

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return RunResult(
        n / wall,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
    )


def request_fn(runner: Runner, shape: str, work: Workload) -> Callable[[int], Awaitable[object]]:
    if shape == "lookup":
        ids = work.ids

        def lookup(i: int) -> Awaitable[object]:
            return runner.lookup(MAIN_CLINIC, ids[i % len(ids)])

        return lookup

    ranges = work.ranges

    def search(i: int) -> Awaitable[object]:
        lo, hi = ranges[i % len(ranges)]
        return runner.search(MAIN_CLINIC, lo, hi)

    return search


async def benchmark(args: argparse.Namespace, work: Workload) -> None:
    results: dict[tuple[str, str, int], list[RunResult]] = {}
    trips: dict[str, str] = {}
    broken: dict[str, list[str]] = {}
    for variant in args.variants:
        runner = make_runner(args.dsn, variant)
        trips[runner.name] = runner.round_trips
        await runner.open()
        try:
            problems = await verify(runner, args.dsn, work)
        finally:
            await runner.close()
        if problems:
            broken[runner.name] = problems
            print(f"!! {runner.name}: correctness check FAILED, not benchmarked:")
            for p in problems[:5]:
                print(f"     {p}")
        else:
            print(f"ok {runner.name}: rows match reference, RLS enforced, role kept")

    for rep in range(1, args.repeats + 1):
        print(f"repeat {rep}: load average {os.getloadavg()[0]:.2f}")
        for variant in args.variants:
            runner = make_runner(args.dsn, variant)
            if runner.name in broken:
                continue
            await runner.open()
            try:
                for shape in args.shapes:
                    if runner.skip_reason(shape):
                        continue
                    lookup = shape == "lookup"
                    n = args.requests if lookup else args.search_requests
                    warmup = args.warmup if lookup else args.search_warmup
                    fn = request_fn(runner, shape, work)
                    for conc in args.concurrency:
                        await drive(fn, warmup, conc, offset=n)
                        res = await drive(fn, n, conc)
                        results.setdefault((runner.name, shape, conc), []).append(res)
                        print(
                            f"  rep {rep} {runner.name:<22} {shape:<6} c={conc:<3}"
                            f" {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f}"
                            f"  p95 {res.p95_ms:6.2f}  p99 {res.p99_ms:6.2f} ms",
                            flush=True,
                        )
            finally:
                await runner.close()

    print()
    print(f"Medians of {args.repeats} runs (each metric's median taken independently).")
    print("| variant | RTT/req | shape | conc | req/s | req/s min-max | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        for conc in args.concurrency:
            for variant in args.variants:
                name = make_runner(args.dsn, variant).name
                runs = results.get((name, shape, conc))
                if not runs:
                    continue
                med = [
                    statistics.median(getattr(r, f) for r in runs)
                    for f in ("rps", "p50_ms", "p95_ms", "p99_ms")
                ]
                print(
                    f"| {name} | {trips[name]} | {shape} | {conc} | {med[0]:.0f} |"
                    f" {min(r.rps for r in runs):.0f}-{max(r.rps for r in runs):.0f} |"
                    f" {med[1]:.2f} | {med[2]:.2f} | {med[3]:.2f} |"
                )
    for name, problems in broken.items():
        print(f"| {name} | - | - | - | FAILED CHECK: {problems[0]} |")
    for variant in args.variants:
        runner = make_runner(args.dsn, variant)
        for shape in args.shapes:
            if reason := runner.skip_reason(shape):
                print(f"| {runner.name} | - | {shape} | - | not run: {reason} |")


def plan_summary(plan: dict[str, Any]) -> str:
    """'Node(est rows) > child ...' along the first-child chain, joins only + scans."""
    parts: list[str] = []
    node: dict[str, Any] | None = plan
    while node is not None:
        kind = node["Node Type"]
        if "Join" in kind or "Loop" in kind or "Scan" in kind:
            parts.append(f"{kind}(est {node['Plan Rows']})")
        children = [c for c in node.get("Plans", []) if c.get("Parent Relationship") != "InitPlan"]
        node = children[0] if children else None
    return " > ".join(parts)


async def plan_check(dsn: str, work: Workload) -> None:
    """Show how the planner sees each search form (as bench_app, under RLS)."""
    lo, hi = work.ranges[0]
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(f"SET ROLE {APP_ROLE}")
        await conn.execute(to_pyformat(SET_CLINIC), (MAIN_CLINIC,))
        cur = await conn.execute("EXPLAIN (FORMAT JSON) " + to_pyformat(SEARCH), (lo, hi))
        row = await cur.fetchone()
        two = plan_summary(row[0][0]["Plan"]) if row else "?"
        await conn.rollback()
        await conn.execute(f"SET ROLE {APP_ROLE}")
        cur = await conn.execute(
            "EXPLAIN (FORMAT JSON) " + to_pyformat(SEARCH_CTE), (MAIN_CLINIC, lo, hi)
        )
        row = await cur.fetchone()
        one = plan_summary(row[0][0]["Plan"]) if row else "?"
        await conn.rollback()
    print(f"plan, search {lo!r} after set_config: {two}")
    print(f"plan, search {lo!r} as one CTE stmt:   {one}")


# --- fast-failure probes ---------------------------------------------------------------
class TcpProxy:
    """Tiny TCP forwarder, so the probes can 'lose' the server without touching it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.listen_port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.listen_port, reuse_address=True
        )
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self.listen_port

    async def stop(self) -> None:
        """Stop listening and cut every forwarded connection (like a server crash)."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def timed(coro: Awaitable[object]) -> tuple[float, str]:
    """(seconds, outcome) for one awaitable; outcome is 'ok' or the exception type + text."""
    t0 = time.perf_counter()
    try:
        await coro
        outcome = "ok"
    except Exception as ex:  # report whatever happened
        outcome = f"{type(ex).__name__}: {str(ex).splitlines()[0][:70] if str(ex) else ''}"
    return time.perf_counter() - t0, outcome


async def pg_request(pool: AsyncConnectionPool, timeout: float | None = None) -> None:
    async with pool.connection(timeout=timeout) as conn:
        await conn.execute("SELECT 1")


async def apg_request(pool: asyncpg.Pool, timeout: float | None = None) -> None:
    async with pool.acquire(timeout=timeout) as conn:
        await conn.execute("SELECT 1")


def report(label: str, seconds: float, outcome: str) -> None:
    print(f"  {label:<62} {seconds:7.3f}s  {outcome}")


async def probe_exhaustion(dsn: str) -> None:
    print("\n[1] pool exhausted (all 20 connections checked out)")
    pool = AsyncConnectionPool(
        dsn,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        timeout=ACQUIRE_TIMEOUT,
        max_idle=MAX_IDLE,
        open=False,
    )
    await pool.open(wait=True)
    held = [await pool.getconn() for _ in range(POOL_MAX)]
    report("psycopg pool.connection(timeout=2)", *await timed(pg_request(pool, 2.0)))
    small = AsyncConnectionPool(dsn, min_size=1, max_size=1, timeout=3.0, open=False)
    await small.open(wait=True)
    one = await small.getconn()
    report("psycopg pool.connection() with pool timeout=3", *await timed(pg_request(small)))
    await small.putconn(one)
    await small.close()
    for c in held:
        await pool.putconn(c)
    await pool.close()

    apool = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)
    aheld = [await apool.acquire() for _ in range(POOL_MAX)]
    report("asyncpg pool.acquire(timeout=2)", *await timed(apg_request(apool, 2.0)))
    report(
        "asyncpg pool.acquire() no timeout, cut off by wait_for(5)",
        *await timed(asyncio.wait_for(apg_request(apool), 5.0)),
    )
    for c in aheld:
        await apool.release(c)
    await apool.close()


async def probe_unreachable() -> None:
    print("\n[2] server unreachable (127.0.0.1:59999, connection refused)")
    down = "host=127.0.0.1 port=59999 user=postgres dbname=driver_bench"
    report(
        "psycopg AsyncConnection.connect(connect_timeout=2)",
        *await timed(psycopg.AsyncConnection.connect(down, connect_timeout=2)),
    )
    pool = AsyncConnectionPool(
        down, min_size=POOL_MIN, max_size=POOL_MAX, timeout=3.0, open=False, reconnect_timeout=4.0
    )
    report("psycopg pool.open(wait=True, timeout=2)", *await timed(pool.open(wait=True, timeout=2)))

    failed_at: list[float] = []
    t_open = time.perf_counter()

    def on_failed(_pool: AsyncConnectionPool) -> None:
        failed_at.append(time.perf_counter() - t_open)

    pool = AsyncConnectionPool(
        down,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        timeout=3.0,
        open=False,
        reconnect_timeout=4.0,
        reconnect_failed=on_failed,
    )
    await pool.open(wait=False)
    report("psycopg pool.connection() with pool timeout=3", *await timed(pg_request(pool)))
    report("psycopg pool.check() on the down pool", *await timed(pool.check()))
    stats = pool.get_stats()
    print(
        f"  stats after ~3s: connections_errors={stats.get('connections_errors', 0)}"
        f" pool_size={stats.get('pool_size')} pool_available={stats.get('pool_available')}"
        f" requests_errors={stats.get('requests_errors', 0)}"
    )
    await asyncio.sleep(5.0)
    print(
        f"  reconnect_failed (reconnect_timeout=4) fired {len(failed_at)}x,"
        f" first at {failed_at[0] if failed_at else float('nan'):.1f}s;"
        f" pool_size now {pool.get_stats().get('pool_size')}"
    )
    await pool.close()

    report(
        "asyncpg create_pool(min_size=5)",
        *await timed(
            asyncpg.create_pool(
                host="127.0.0.1", port=59999, user="postgres", min_size=POOL_MIN, max_size=POOL_MAX
            )
        ),
    )
    apool = await asyncpg.create_pool(
        host="127.0.0.1", port=59999, user="postgres", min_size=0, max_size=POOL_MAX
    )
    report("asyncpg pool.acquire(timeout=3) (min_size=0 pool)", *await timed(apg_request(apool, 3)))
    await apool.close()


class HealthGate:
    """Fail-fast gate (suggested pattern): requests check `up` first and answer 503 at once
    while it is down. A failing request marks it down; a background probe through the pool
    (short timeout) marks it down/up again."""

    def __init__(
        self, pool: AsyncConnectionPool, interval: float = 0.5, probe_timeout: float = 1.0
    ):
        self.pool = pool
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.up = True
        self.changed_at = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def mark(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            self.changed_at = time.perf_counter()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await pg_request(self.pool, self.probe_timeout)
                self.mark(True)
            except (psycopg.Error, PoolTimeout):
                self.mark(False)
            await asyncio.sleep(self.interval)

    async def request(self, timeout: float) -> str:
        if not self.up:
            return "503"
        try:
            await pg_request(self.pool, timeout)
        except (psycopg.Error, PoolTimeout):
            self.mark(False)
            return "error"
        return "ok"


def pg_url(info: dict[str, Any], port: int) -> str:
    return f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{port}/{info.get('dbname')}"


async def probe_server_lost(dsn: str) -> None:
    print("\n[3] server lost while the pool is up (TCP proxy in front of PostgreSQL is killed)")
    info = conninfo_to_dict(dsn)
    proxy = TcpProxy(str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)))
    port = await proxy.start()
    via = make_conninfo(dsn, host="127.0.0.1", port=port)

    for label, check in (("no check", None), ("check=check_connection", "yes")):
        pool = AsyncConnectionPool(
            via,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=3.0,
            open=False,
            check=AsyncConnectionPool.check_connection if check else None,
        )
        await pool.open(wait=True)
        await pg_request(pool)
        await proxy.stop()
        t_down = time.perf_counter()
        print(f"  psycopg pool timeout=3, {label}: sequential requests after the server vanished")
        for i in range(1, 8):
            report(f"    request {i}", *await timed(pg_request(pool)))
        await proxy.start()  # server back
        t0 = time.perf_counter()
        ok_after = float("nan")
        while time.perf_counter() - t0 < 60:
            _, out = await timed(pg_request(pool, 0.5))
            if out == "ok":
                ok_after = time.perf_counter() - t0
                break
        print(
            f"    server back after a {t0 - t_down:.0f}s outage:"
            f" first successful request {ok_after:.1f}s later (pool reconnect backoff)"
        )
        await pool.close()

    # the suggested gate, with the service's real 30 s acquire timeout
    pool = AsyncConnectionPool(
        via, min_size=POOL_MIN, max_size=POOL_MAX, timeout=ACQUIRE_TIMEOUT, open=False
    )
    await pool.open(wait=True)
    gate = HealthGate(pool)
    gate.start()
    await proxy.stop()
    t_down = time.perf_counter()
    worst = 0.0
    counts: dict[str, int] = {}
    while time.perf_counter() - t_down < 8.0:
        t = time.perf_counter()
        out = await gate.request(ACQUIRE_TIMEOUT)
        worst = max(worst, time.perf_counter() - t)
        counts[out] = counts.get(out, 0) + 1
        await asyncio.sleep(0.01)
    print(
        f"  HealthGate (pool timeout=30, probe every 0.5s with timeout=1), 8s outage:"
        f" {counts}, slowest request {worst * 1000:.1f} ms,"
        f" gate down {gate.changed_at - t_down:.3f}s after the loss"
    )
    await proxy.start()
    t_back = time.perf_counter()
    while not gate.up and time.perf_counter() - t_back < 60:
        await asyncio.sleep(0.01)
    print(f"    server back: gate up again after {time.perf_counter() - t_back:.1f}s")
    report("    next request", *await timed(pg_request(pool, 3.0)))
    await gate.stop()
    await pool.close()

    apool = await asyncpg.create_pool(pg_url(info, port), min_size=POOL_MIN, max_size=POOL_MAX)
    await apg_request(apool)
    await proxy.stop()
    await asyncio.sleep(0.05)
    print("  asyncpg: sequential requests after the server vanished")
    for i in range(1, 5):
        report(f"    request {i}", *await timed(apg_request(apool, 3.0)))
    await proxy.start()
    report("    server back: next request", *await timed(apg_request(apool, 3.0)))
    await apool.close()
    await proxy.stop()


async def probe_idle_shrink(dsn: str) -> None:
    print("\n[4] idle timeout vs min_size (idle limit 1 s, pool grown to 20, then idle 4 s)")
    pool = AsyncConnectionPool(dsn, min_size=POOL_MIN, max_size=POOL_MAX, max_idle=1.0, open=False)
    await pool.open(wait=True)
    held = [await pool.getconn() for _ in range(POOL_MAX)]
    for c in held:
        await pool.putconn(c)
    await asyncio.sleep(4.0)
    print(f"  psycopg max_idle=1: pool_size {pool.get_stats().get('pool_size')}")
    await pool.close()
    apool = await asyncpg.create_pool(
        dsn, min_size=POOL_MIN, max_size=POOL_MAX, max_inactive_connection_lifetime=1.0
    )
    aheld = [await apool.acquire() for _ in range(POOL_MAX)]
    for c in aheld:
        await apool.release(c)
    await asyncio.sleep(4.0)
    print(f"  asyncpg max_inactive_connection_lifetime=1: get_size() {apool.get_size()}")
    await apool.close()


async def failfast(dsn: str) -> None:
    for name in ("psycopg.pool", "asyncpg.pool"):  # expected connect errors
        logging.getLogger(name).setLevel(logging.CRITICAL)
    await probe_exhaustion(dsn)
    await probe_unreachable()
    await probe_server_lost(dsn)
    await probe_idle_shrink(dsn)


# --- main ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/driver_bench")
    ap.add_argument("--requests", type=int, default=20_000, help="lookup requests per run")
    ap.add_argument(
        "--search-requests",
        type=int,
        default=2_000,
        help="search requests per run (each costs ~15 ms of server time on a 2-core box)",
    )
    ap.add_argument("--warmup", type=int, default=2_000, help="lookups before each run")
    ap.add_argument("--search-warmup", type=int, default=200, help="searches before each run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    ap.add_argument(
        "--shapes", nargs="+", default=["lookup", "search"], choices=["lookup", "search"]
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--rebuild", action="store_true", help="rebuild the scratch data")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--skip-failfast", action="store_true")
    ap.add_argument("--drop", action="store_true", help="drop the scratch database at the end")
    return ap.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    print(" ".join([".venv/bin/python", *sys.argv]))
    print(
        f"python {platform.python_version()}, psycopg {psycopg.__version__}"
        f" ({psycopg.pq.__impl__}), psycopg_pool {psycopg_pool.__version__},"
        f" asyncpg {asyncpg.__version__}, uvloop {uvloop.__version__}, cpus {os.cpu_count()}"
    )
    await ensure_database(args.dsn, args.rebuild)
    async with await psycopg.AsyncConnection.connect(args.dsn) as conn:
        cur = await conn.execute("SHOW server_version")
        row = await cur.fetchone()
        print(f"PostgreSQL {row[0] if row else '?'}")
    work = await load_workload(args.dsn)
    print(
        f"workload: {len(work.ids)} lookup ids, {len(work.ranges)} search prefixes;"
        f" avg {work.avg_terms_per_prefix:.0f} matching term rows per prefix"
        f" ({work.terms_total} term rows)"
    )
    await plan_check(args.dsn, work)
    if not args.skip_bench:
        await benchmark(args, work)
    if not args.skip_failfast:
        await failfast(args.dsn)
    if args.drop:
        await drop_database(args.dsn)


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
