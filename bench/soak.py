"""The soak (`make soak`): steady mixed load for minutes; does memory grow, does the pool drain?

One server (2 workers, cache on) on the benchmark data set of SOAK_SIZE patients (default
100,000; imported on first use), driven by the paced front-desk scenario (searches, profiles,
updates) with 50 users for `--minutes` (default SOAK_MINUTES or 10). Every 5 s: each worker's
RSS (psutil), the pool's in-use connections (/metrics), the service's open connections
(`pg_stat_activity`, application_name `patient-search`) and the audit journal's undrained
entries (XLEN). Afterwards, at rest, the same again.

Reported: RSS growth after the warm-up (the first fifth of the run, at least one minute, capped at
three), per worker (target ≤ 5 %), and that nothing is in use at rest. Writes
`bench/results/<date>/soak.md`, `soak.json` and `soak.png`.

    .venv/bin/python bench/soak.py [--minutes 10] [--size 100000] [--users 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).parent))
import dataset  # noqa: E402
import fixtures  # noqa: E402
import service_metrics as sm  # noqa: E402
from load import Load, run_locust  # noqa: E402
from measures import measured, named, summarise  # noqa: E402
from server import Sampler, Server, ServerConfig, Tick  # noqa: E402

from patient_search.audit.journal import STREAM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_EVERY_S = 5.0
RSS_GROWTH_TARGET = 0.05
# After the load stops: long enough for the workers' 0.5 s pool sampler to publish twice.
REST_S = 3.0

_CONNECTIONS_SQL = """
    SELECT count(*) AS open,
           count(*) FILTER (WHERE state IS DISTINCT FROM 'idle') AS busy
    FROM pg_stat_activity
    WHERE application_name = 'patient-search' AND datname = %s
"""


def connections(url: str, database: str) -> dict[str, float]:
    """The service's connections in PostgreSQL: open, and not idle."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(_CONNECTIONS_SQL, (database,)).fetchone()
    return {"pg_open": float(row[0]), "pg_busy": float(row[1])} if row else {}


def journal_backlog(redis_url: str) -> dict[str, float]:
    """Audit entries in the Redis journal not yet drained into access_audit (decision 0014)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return {"journal_backlog": float(client.xlen(STREAM))}
    finally:
        client.close()


def warmup_s(duration_s: float) -> float:
    return min(180.0, max(60.0, duration_s / 5)) if duration_s > 120 else duration_s / 5


def rss_growth(ticks: list[Tick], warmup: float) -> dict[str, dict[str, float]]:
    """Per worker: RSS just after the warm-up, at the end, and the growth between them."""
    if not ticks:
        return {}
    t0 = ticks[0].t
    after = [t for t in ticks if t.t - t0 >= warmup]
    if len(after) < 2:
        return {}
    head = after[: max(1, len(after) // 10)]
    tail = after[-max(1, len(after) // 10) :]
    growth = {}
    for pid in after[0].rss:
        start = statistics.median(t.rss[pid] for t in head if pid in t.rss)
        end = statistics.median(t.rss[pid] for t in tail if pid in t.rss)
        growth[str(pid)] = {"after_warmup": start, "end": end, "growth": end / start - 1}
    return growth


def in_use(tick: Tick) -> float | None:
    return sm.Scrape.parse(tick.metrics).total(sm.POOL_CONNECTIONS, sm.in_use)


def summarise_run(ticks: list[Tick], rest: Tick, duration_s: float) -> dict[str, Any]:
    warm = warmup_s(duration_s)
    t0 = ticks[0].t if ticks else 0.0
    return {
        "warmup_s": warm,
        "rss_growth": rss_growth(ticks, warm),
        "rest": {"in_use": in_use(rest), **rest.extra},
        "timeline": [
            {"t": round(t.t - t0, 1), "rss": t.rss, "in_use": in_use(t), **t.extra} for t in ticks
        ],
    }


def count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def render(summary: dict[str, Any], latency: dict[str, Any], meta: dict[str, Any]) -> str:
    growth = summary["rss_growth"]
    worst = max((g["growth"] for g in growth.values()), default=None)
    rest = summary["rest"]
    rss_ok = worst is not None and worst <= RSS_GROWTH_TARGET
    pool_ok = rest.get("in_use") == 0
    pg_ok = rest.get("pg_busy") == 0
    journal_ok = rest.get("journal_backlog") == 0
    rows = [
        f"| worker {pid} | {g['after_warmup'] / 2**20:.1f} | {g['end'] / 2**20:.1f} "
        f"| {100 * g['growth']:+.2f} % |"
        for pid, g in growth.items()
    ]
    lat_rows = [
        f"| `{name}` | {v['n']:,} | {v['per_s']:.1f} | {v['p50']:.1f} | {v['p95']:.1f} "
        f"| {v['p99']:.1f} | {v['errors']} |"
        for name, v in latency.items()
    ]
    verdict = {True: "**pass**", False: "**FAIL**"}
    return "\n".join(
        [
            f"# Soak — {meta['started'][:10]}",
            "",
            f"Command: `{meta['command']}`. {meta['size']:,} patients, {meta['users']} paced "
            f"front-desk users for {meta['minutes']} min on a server of 2 workers (cache on); "
            f"sampled every {SAMPLE_EVERY_S:.0f} s; warm-up {summary['warmup_s']:.0f} s. "
            f"Load average at start {meta['loadavg_start']:.1f}, at end {meta['loadavg_end']:.1f}.",
            "",
            "| check | target | measured | |",
            "|---|---|---|---|",
            f"| RSS growth after warm-up, worst worker | ≤ 5 % | "
            f"{'n/a' if worst is None else f'{100 * worst:+.2f} %'} | {verdict[rss_ok]} |",
            f"| pool in use at rest (/metrics) | 0 | {count(rest.get('in_use'))} "
            f"| {verdict[pool_ok]} |",
            f"| service connections not idle at rest (pg_stat_activity) | 0 | "
            f"{count(rest.get('pg_busy'))} (open: {count(rest.get('pg_open'))}) "
            f"| {verdict[pg_ok]} |",
            f"| audit journal entries not yet in access_audit at rest (XLEN) | 0 | "
            f"{count(rest.get('journal_backlog'))} | {verdict[journal_ok]} |",
            "",
            "| worker | RSS after warm-up MiB | RSS at end MiB | growth |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            "RSS after warm-up and at the end are medians of the first and last tenth of the"
            " samples taken after the warm-up.",
            "",
            "| request | n | req/s | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *lat_rows,
            "",
            "![RSS and pool over time](soak.png)",
            "",
        ]
    )


def plot(summary: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = summary["timeline"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    pids = sorted({pid for row in timeline for pid in row["rss"]})
    for pid in pids:
        xs = [row["t"] for row in timeline if pid in row["rss"]]
        ys = [row["rss"][pid] / 2**20 for row in timeline if pid in row["rss"]]
        top.plot(xs, ys, label=f"worker {pid}")
    top.axvline(summary["warmup_s"], color="grey", linewidth=0.8, linestyle="--")
    top.set(ylabel="RSS, MiB", title="Soak: worker memory and connections")
    top.legend(fontsize=7)
    top.grid(True, alpha=0.3)
    xs = [row["t"] for row in timeline]
    bottom.plot(xs, [row.get("in_use") for row in timeline], label="pool in use (/metrics)")
    bottom.plot(xs, [row.get("pg_open") for row in timeline], label="open (pg_stat_activity)")
    bottom.plot(xs, [row.get("pg_busy") for row in timeline], label="not idle (pg_stat_activity)")
    bottom.set(xlabel="seconds", ylabel="connections")
    bottom.legend(fontsize=7)
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)))
    parser.add_argument("--size", type=int, default=int(os.environ.get("SOAK_SIZE", 100_000)))
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/DATE)")
    args = parser.parse_args()
    out = args.out or RESULTS / dt.date.today().isoformat()
    duration_s = int(args.minutes * 60)
    ds = dataset.prepare(args.size)
    data = fixtures.prepare(ds)
    meta: dict[str, Any] = {
        "command": f"SOAK_MINUTES={args.minutes:g} make soak",
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "size": args.size,
        "users": args.users,
        "minutes": args.minutes,
        "loadavg_start": os.getloadavg()[0],
    }
    with Server(ServerConfig("soak"), ds.url, dataset.CLINIC) as server:
        sampler = Sampler(
            server,
            SAMPLE_EVERY_S,
            lambda: {**connections(ds.url, ds.database), **journal_backlog(server.redis_url)},
        )
        print(f"soak: {args.users} users for {duration_s} s against {server.url}", file=sys.stderr)
        result = run_locust(
            Load("FrontDesk", args.users, duration_s), server, data, out / "raw", "soak", sampler
        )
        time.sleep(REST_S)
        rest = sampler.tick()
    meta["loadavg_end"] = os.getloadavg()[0]
    kept, window = measured(result.samples, warmup_s(duration_s))
    names = sorted({s.name for s in kept})
    latency: dict[str, Any] = {}
    for name in names:
        found = summarise(kept, window, named(name))
        if found is not None:
            latency[name] = dataclasses.asdict(found)
    summary = summarise_run(result.ticks, rest, duration_s)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(
        json.dumps({"meta": meta, "latency": latency, **summary}, indent=1), encoding="utf-8"
    )
    plot(summary, out)
    text = render(summary, latency, meta)
    (out / "soak.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
