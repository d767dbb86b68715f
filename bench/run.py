"""The benchmark (`make bench`, `make bench-quick`): load, side-by-side baselines, overload, report.

For each data set size (`--sizes`, or BENCH_SIZES; 10k, 100k and 1M by default), `--repeats`
times:

1. a server with the cache on (the production configuration): the front-desk scenario, paced,
   at each concurrency level; closed-loop maxima of `/healthz`, cached lookups and cached
   searches; the Zipf check-in lookups after the clinic's cache keys are dropped;
2. a server with the cache off: closed-loop uncached lookups and searches, the Zipf lookups
   again, and the front desk at the highest level;
3. the seed's full-text SQL and a naive ILIKE, closed loop against the database alone.

Then one overload run at the largest size (a pool of 1 per worker, 0.1 s acquire timeout) and
the report: `--out` (default `bench/results/<date>/`) gets `report.md`, `results.json`, PNG
plots, and the raw Locust/sample CSVs under `raw/`.

    .venv/bin/python bench/run.py [--quick] [--sizes 10000,100000] [--repeats 3] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))
import database_side  # noqa: E402
import dataset  # noqa: E402
import fixtures  # noqa: E402
import plots  # noqa: E402
import relevance  # noqa: E402
import report  # noqa: E402
import service_metrics as sm  # noqa: E402
import sql_baselines  # noqa: E402
from load import Load, LoadResult, run_locust  # noqa: E402
from measures import Sample, first_and_repeat, measured, named, summarise  # noqa: E402
from server import Server, ServerConfig, Tick, running  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CACHED = ServerConfig("cached")
UNCACHED = ServerConfig("uncached", cache_enabled=False)
# Small enough that 100 closed-loop searches must exhaust it: with 2 connections and a 0.5 s
# wait, searches of ~4 ms database time no longer did (0 of 2,791 requests refused).
OVERLOAD = ServerConfig("overload", cache_enabled=False, pool_max=1, acquire_timeout_s=0.1)
CONCURRENCY = 50
# Each check-in client looks a patient up 0.2 s apart on average, at Poisson times (50 clients:
# ~250 lookups/s offered).
CHECKIN_PACING_S = 0.2
ZIPF_S = 1.1
# Popularity is over a day's patients, not the whole clinic: a day of check-ins touches the
# day's appointments (1,000 across the practice here), some many times (arrival, billing,
# calls). Over all 1M patients most lookups would be first sightings that no cache can
# hit — measured before: 56 % hits against a 56.4 % share of repeats.
ZIPF_PATIENTS = 1000


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how often: `--quick` and the full run differ only here."""

    sizes: tuple[int, ...]
    repeats: int
    closed_s: int
    paced_s: int
    single_user_s: int  # 1 user sends few requests: run longer for a usable p95
    zipf_s: int
    zipf_warmup_s: float  # the cache fills as in the day's first minutes: not measured
    warmup_s: float
    levels: tuple[int, ...]
    overload_s: int
    overload_users: int


QUICK = Plan((10_000, 100_000), 1, 10, 15, 40, 30, 10.0, 2.0, (1, 50), 10, 100)
FULL = Plan((10_000, 100_000, 1_000_000), 3, 30, 30, 90, 60, 20.0, 5.0, (1, 10, 25, 50), 20, 100)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ describing a run


def _latencies(samples: list[Sample], window_s: float) -> dict[str, dict[str, float]]:
    """Per request name, plus `search` (every search.*) and `all`."""
    names = sorted({s.name for s in samples})
    groups = {name: named(name) for name in names}
    if any(n.startswith("search.") for n in names):
        groups["search"] = named("search")
    groups["all"] = lambda s: True
    out = {}
    for group, accept in groups.items():
        latency = summarise(samples, window_s, accept)
        if latency is not None:
            out[group] = dataclasses.asdict(latency)
    return out


def _service_side(ticks: list[Tick]) -> dict[str, Any]:
    """What /metrics and psutil said during the run (None where a metric is absent)."""
    scrapes = [sm.Scrape.parse(t.metrics) for t in ticks]
    delta = scrapes[-1].minus(scrapes[0]) if scrapes else sm.Scrape({})
    acquire_p95 = sm.quantile(delta, sm.POOL_ACQUIRE, 0.95)
    lookup_p99 = sm.quantile(
        delta, sm.DB_DURATION, 0.99, lambda lb: lb.get("query") == "patient.get"
    )
    caches = {c: sm.cache_counts(delta, c) for c in ("profile", "summary", "search")}
    rss: dict[str, int] = {}
    for tick in ticks:
        for pid, value in tick.rss.items():
            rss[str(pid)] = max(rss.get(str(pid), 0), value)
    return {
        "db_share": sm.database_share(delta),
        "acquire_p95_ms": None if acquire_p95 is None else acquire_p95 * 1000,
        "lookup_db_p99_ms": None if lookup_p99 is None else lookup_p99 * 1000,
        "pool_peak_in_use": sm.peak(scrapes, sm.POOL_CONNECTIONS, sm.in_use),
        "pool_max": sm.peak(scrapes, sm.POOL_MAX),
        "pool_peak_waiting": sm.peak(scrapes, sm.POOL_WAITING),
        "cache": {c: counts for c, counts in caches.items() if counts is not None},
        "cache_hit_ratio": sm.hit_ratio(_summed(caches)),
        "rss_peak_by_worker": rss,
        "timeline_t0": ticks[0].t if ticks else None,
        "timeline": _timeline(ticks, scrapes),
    }


def _summed(caches: dict[str, dict[str, float] | None]) -> dict[str, float] | None:
    present = [c for c in caches.values() if c]
    if not present:
        return None
    return {r: sum(c[r] for c in present) for r in ("hit", "miss", "error")}


def _timeline(ticks: list[Tick], scrapes: list[sm.Scrape]) -> list[dict[str, Any]]:
    """Per second: cumulative cache look-ups, pool in use and waiting, RSS."""
    if not ticks:
        return []
    t0 = ticks[0].t
    rows = []
    for tick, scrape in zip(ticks, scrapes, strict=True):
        hits = scrape.total(sm.CACHE_REQUESTS, lambda lb: lb.get("result") == "hit")
        lookups = scrape.total(sm.CACHE_REQUESTS)
        rows.append(
            {
                "t": round(tick.t - t0, 2),
                "cache_hits": hits,
                "cache_lookups": lookups,
                "in_use": scrape.total(sm.POOL_CONNECTIONS, sm.in_use),
                "waiting": scrape.total(sm.POOL_WAITING),
                "rss": sum(tick.rss.values()),
            }
        )
    return rows


def _zipf_split(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    """First request of each patient in the run (a miss: the cache was emptied) vs repeats.

    Classified over the whole run, summarised over the measured window. The cumulative share
    of repeats per second is the hit ratio the cache could reach (the estimate shown when the
    service's cache counters are absent).
    """
    first, repeat = first_and_repeat(samples)
    kept, window = measured(samples, warmup_s)
    begin = min((s.start for s in kept), default=0.0)
    t0 = min((s.start for s in samples), default=0.0)
    repeats_so_far = 0
    over_time: list[list[float]] = []
    ordered = sorted(samples, key=lambda s: s.start)
    repeated = {id(s) for s in repeat}
    for count, s in enumerate(ordered, start=1):
        repeats_so_far += id(s) in repeated
        second = int(s.start - t0)
        if not over_time or over_time[-1][0] != second:
            over_time.append([second, 0.0])
        over_time[-1][1] = repeats_so_far / count
    in_window = [s for s in repeat if s.start >= begin]
    split = {
        "first": summarise([s for s in first if s.start >= begin], window),
        "repeat": summarise(in_window, window),
    }
    return {
        **{k: None if v is None else dataclasses.asdict(v) for k, v in split.items()},
        "repeat_share": len(repeat) / len(samples) if samples else None,
        "repeat_share_window": len(in_window) / len(kept) if kept else None,
        "repeat_share_over_time": over_time,
        "distinct_patients": len(first),
        "first_request_at": t0,
    }


def describe(result: LoadResult, warmup_s: float, **extra: Any) -> dict[str, Any]:
    kept, window = measured(result.samples, warmup_s)
    begin = min((s.start for s in result.samples), default=0.0) + warmup_s
    return {
        **extra,
        "window_s": window,
        "hung": result.hung,
        "endpoints": _latencies(kept, window),
        "service": _service_side(result.ticks),
        "cache_in_window": _cache_counts([t for t in result.ticks if t.t >= begin]),
        "loadavg": os.getloadavg()[0],
    }


def _cache_counts(ticks: list[Tick]) -> dict[str, Any]:
    """Each cache's hits and misses between the first and the last of `ticks`."""
    if len(ticks) < 2:
        return {}
    delta = sm.Scrape.parse(ticks[-1].metrics).minus(sm.Scrape.parse(ticks[0].metrics))
    counts = {c: sm.cache_counts(delta, c) for c in ("profile", "summary", "search")}
    return {c: found for c, found in counts.items() if found is not None}


# ------------------------------------------------------------------------ phases


class Session:
    """One benchmark invocation: where results go and how phases are recorded."""

    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan = plan
        self.out = out
        self.raw = out / "raw"
        self.meta: dict[str, Any] = {}
        self.datasets: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []

    def record(self, size: int, repeat: int, phase: str, server: str, run: dict[str, Any]) -> None:
        self.runs.append({"size": size, "repeat": repeat, "phase": phase, "server": server, **run})
        self.save()

    def locust(
        self,
        server: Server,
        data: Path,
        size: int,
        repeat: int,
        phase: str,
        load: Load,
        after: Callable[[], dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        log(f"{size:,} #{repeat} {phase}: {load.user_class} × {load.users} for {load.duration_s} s")
        label = f"{size}-r{repeat}-{phase}"
        result = run_locust(load, server, data, self.raw, label)
        checkin = load.user_class == "CheckIn"
        warmup_s = self.plan.zipf_warmup_s if checkin else self.plan.warmup_s
        run = describe(result, warmup_s, users=load.users, duration_s=load.duration_s, **extra)
        log_text = (self.raw / f"{label}.locust.log").read_text(encoding="utf-8")
        run["locust_requests"] = locust_request_count(log_text)
        run["samples"] = len(result.samples)
        if checkin:
            run["zipf"] = _zipf_split(result.samples, warmup_s)
        if phase == "overload":
            run["overload"] = _overload(result.samples)
        if after is not None:
            run.update(after())
        self.record(size, repeat, phase, server.config.label, run)
        return run

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.json").write_text(json.dumps(self.payload(), indent=1, default=str))

    def payload(self) -> dict[str, Any]:
        return {"meta": self.meta, "datasets": self.datasets, "runs": self.runs}


def _overload(samples: list[Sample]) -> dict[str, Any]:
    unavailable = [s for s in samples if s.status == 503]
    return {
        "requests": len(samples),
        "ok": sum(1 for s in samples if s.status == 200),
        "unavailable": len(unavailable),
        "unavailable_without_retry_after": sum(1 for s in unavailable if not s.retry_after),
        "other_errors": sum(1 for s in samples if s.status not in (200, 503)),
        "max_ms": max((s.ms for s in samples), default=0.0),
        "unavailable_max_ms": max((s.ms for s in unavailable), default=0.0),
        "unavailable_p50_ms": sorted(s.ms for s in unavailable)[len(unavailable) // 2]
        if unavailable
        else None,
    }


def locust_request_count(log_text: str) -> int | None:
    """Locust's own count of requests (its printed Aggregated row): a check on our samples.

    Its `_stats.csv` is a snapshot written shortly before the end, so it is not used for this.
    """
    for line in log_text.splitlines():
        fields = line.split()
        if fields[:1] == ["Aggregated"] and len(fields) > 1 and fields[1].isdigit():
            return int(fields[1])
    return None


def forget_cached_patients(redis_url: str) -> int:
    """Drop the benchmark clinic's cache keys (the service's prefix and this clinic only)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"ps:{{{dataset.CLINIC}}}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


async def _fetch_all(server: Server, paths: list[tuple[str, dict[str, str]]]) -> None:
    token = json.loads(server.tokens_path.read_text())[0]
    headers = {"Authorization": f"Bearer {token}"}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:

        async def one(path: str, params: dict[str, str]) -> None:
            async with limit:
                await client.get(path, params=params)

        await asyncio.gather(*(one(p, q) for p, q in paths))


def warm(server: Server, data: Path, lookups: int | None = None) -> None:
    """Fetch the hot profiles and searches once: pool, plans, buffers (and the cache) warm up."""
    payload = fixtures.load(data)
    paths: list[tuple[str, dict[str, str]]] = [
        (f"/v1/patients/{i}", {}) for i in payload["hot_ids"][:lookups]
    ]
    paths += [("/v1/patients", {"q": q, "limit": "10"}) for q in payload["hot_searches"]]
    asyncio.run(_fetch_all(server, paths))


def closed(endpoint: str, seconds: int, **env: str) -> Load:
    return Load("ClosedLoop", CONCURRENCY, seconds, {"BENCH_ENDPOINT": endpoint, **env})


def checkin(seconds: int) -> Load:
    env = {
        "BENCH_CHECKIN_PACING_S": str(CHECKIN_PACING_S),
        "BENCH_ZIPF_S": str(ZIPF_S),
        "BENCH_ZIPF_PATIENTS": str(ZIPF_PATIENTS),
    }
    return Load("CheckIn", CONCURRENCY, seconds, env)


def front_desk(users: int, seconds: int) -> Load:
    return Load("FrontDesk", users, seconds)


@dataclass(frozen=True, slots=True)
class Stage:
    """One server and data set in one repeat: runs a named phase and records it."""

    session: Session
    server: Server
    size: int
    data: Path
    repeat: int

    def run(
        self, phase: str, load: Load, after: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        """`after`: read once the load has stopped, recorded with the run."""
        self.session.locust(self.server, self.data, self.size, self.repeat, phase, load, after)


def with_cache(target: Stage) -> None:
    """The production configuration: paced front desk, closed-loop maxima, Zipf lookups."""
    plan = target.session.plan
    warm(target.server, target.data)
    for users in plan.levels:
        seconds = plan.single_user_s if users == 1 else plan.paced_s
        target.run(f"paced-{users}", front_desk(users, seconds))
    target.run("max-healthz", closed("healthz", plan.closed_s))
    target.run("max-lookup-cached", closed("lookup", plan.closed_s))
    target.run("max-search-cached", closed("search", plan.closed_s, BENCH_SEARCH_HOT="1"))
    log(f"cache: dropped {forget_cached_patients(target.server.redis_url)} keys of the clinic")
    target.run("zipf-cached", checkin(plan.zipf_s))


def without_cache(target: Stage) -> None:
    """Cache off: what the database path sustains, and the front desk without the cache."""
    plan = target.session.plan
    warm(target.server, target.data, lookups=300)
    target.run("max-lookup-uncached", closed("lookup", plan.closed_s))
    target.run("max-search-uncached", closed("search", plan.closed_s))
    target.run("max-match-uncached", closed("match", plan.closed_s))
    target.run("zipf-uncached", checkin(plan.zipf_s))
    top = max(plan.levels)
    # PostgreSQL's own timing of the profile lookups of this run, beside the service's.
    url = target.server.database_url
    counted = database_side.reset(url)
    target.run(
        f"paced-{top}-uncached",
        front_desk(top, plan.paced_s),
        after=lambda: {"database_side": database_side.profile_reads(url) if counted else None},
    )


def database_only(session: Session, ds: dataset.Dataset, data: Path, repeat: int) -> None:
    texts = fixtures.name_queries(data)
    for engine in sql_baselines.ENGINES:
        seconds = session.plan.closed_s
        log(f"{ds.size:,} #{repeat} sql-{engine}: {CONCURRENCY} clients for {seconds} s")
        samples = sql_baselines.run(ds.url, engine, texts, CONCURRENCY, session.plan.closed_s)
        kept, window = measured(samples, session.plan.warmup_s)
        run = {
            "users": CONCURRENCY,
            "duration_s": session.plan.closed_s,
            "window_s": window,
            "endpoints": _latencies(kept, window),
            "loadavg": os.getloadavg()[0],
        }
        session.record(ds.size, repeat, f"sql-{engine}", "database", run)


def overload(session: Session, ds: dataset.Dataset, data: Path) -> None:
    plan = session.plan
    with Server(OVERLOAD, ds.url, dataset.CLINIC) as server:
        load = Load(
            "ClosedLoop", plan.overload_users, plan.overload_s, {"BENCH_ENDPOINT": "search"}
        )
        config = dataclasses.asdict(OVERLOAD)
        session.locust(server, data, ds.size, 0, "overload", load, config=config)


# ------------------------------------------------------------------------ main


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import psutil

    rows = relevance._admin(dataset._server_url(), sql.SQL("SHOW server_version"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": rows[0][0],
        "locust": _version("locust"),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    sizes = args.sizes or os.environ.get("BENCH_SIZES")
    if sizes:
        plan = dataclasses.replace(plan, sizes=tuple(int(s) for s in str(sizes).split(",") if s))
    if args.repeats:
        plan = dataclasses.replace(plan, repeats=args.repeats)
    if args.duration:
        d = args.duration
        plan = dataclasses.replace(
            plan,
            closed_s=d,
            paced_s=d,
            single_user_s=3 * d,
            zipf_s=3 * d,
            zipf_warmup_s=d,  # a third of the Zipf run fills the cache, as in the plans
            overload_s=d,
        )
    return plan


def _command(args: argparse.Namespace) -> str:
    """How to reproduce this run from the Makefile, or the script's own command line."""
    target = "make bench-quick" if args.quick else "make bench"
    if args.duration or args.repeats or args.out or args.sizes:
        return "python bench/run.py " + " ".join(sys.argv[1:])
    sizes = os.environ.get("BENCH_SIZES")
    return f"BENCH_SIZES={sizes} {target}" if sizes else target


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", help="comma-separated patient counts (default: BENCH_SIZES or the plan's)"
    )
    parser.add_argument("--quick", action="store_true", help="10k and 100k, short runs, 1 repeat")
    parser.add_argument("--duration", type=int, help="seconds per closed-loop and paced run")
    parser.add_argument("--repeats", type=int, help="times each phase runs (medians are reported)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/DATE)")
    parser.add_argument("--reimport", action="store_true", help="import the data sets again")
    parser.add_argument(
        "--readme", action="store_true", help="copy the headline table into README.md"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def _stopwatch(name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"{name}: {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    plan = _plan(args)
    out = args.out or RESULTS / dt.date.today().isoformat()
    session = Session(plan, out)
    started = time.perf_counter()
    commit, digest = dataset.code_version()
    session.meta = {
        "command": _command(args),
        "argv": sys.argv[1:] if argv is None else argv,
        "plan": dataclasses.asdict(plan),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit,
        "source_digest": digest,
        "loadavg_start": os.getloadavg(),
        "concurrency": CONCURRENCY,
        "zipf_s": ZIPF_S,
        "zipf_patients": ZIPF_PATIENTS,
        "checkin_pacing_s": CHECKIN_PACING_S,
        "hot_searches": fixtures.HOT_SEARCHES,
    }
    prepared: list[tuple[dataset.Dataset, Path]] = []
    for size in plan.sizes:
        with _stopwatch(f"data set {size:,}"):
            ds = dataset.prepare(size, reimport=args.reimport)
            prepared.append((ds, fixtures.prepare(ds)))
        session.datasets[str(size)] = dataclasses.asdict(ds)
    for repeat in range(1, plan.repeats + 1):
        for ds, data in prepared:
            with (
                _stopwatch(f"{ds.size:,} repeat {repeat}"),
                running(ds.url, dataset.CLINIC, CACHED, UNCACHED) as (cached, uncached),
            ):
                with_cache(Stage(session, cached, ds.size, data, repeat))
                without_cache(Stage(session, uncached, ds.size, data, repeat))
                database_only(session, ds, data, repeat)
    with _stopwatch("overload"):
        overload(session, *prepared[-1])
    session.meta["elapsed_s"] = round(time.perf_counter() - started)
    session.meta["loadavg_end"] = os.getloadavg()
    session.save()
    results = session.payload()
    images = plots.draw_all(results, out)
    text = report.render(results, images)
    (out / "report.md").write_text(text, encoding="utf-8")
    if args.readme:
        report.update_readme(results)
    print(report.headline(results))
    log(f"bench: {out / 'report.md'} in {session.meta['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
