"""The benchmark report: `results.json` (bench/run.py) rendered as markdown, targets first.

Every figure is the median over the run's repeats; every ratio is computed within a repeat (the
two runs it compares are minutes apart) and then the median taken.

    .venv/bin/python bench/report.py bench/results/<date>   # re-render report.md
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"
MILLION = 1_000_000

Results = dict[str, Any]


# ------------------------------------------------------------------------ reading results


def get(record: Any, *path: str) -> Any:
    """A nested value, or None when any step is missing."""
    for step in path:
        if not isinstance(record, dict) or record.get(step) is None:
            return None
        record = record[step]
    return record


def runs(results: Results, size: int, phase: str) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["size"] == size and r["phase"] == phase]


def med(results: Results, size: int, phase: str, *path: str) -> float | None:
    values = [v for r in runs(results, size, phase) if (v := get(r, *path)) is not None]
    return statistics.median(values) if values else None


def ratio(
    results: Results,
    size: int,
    top: tuple[str, tuple[str, ...]],
    bottom: tuple[str, tuple[str, ...]],
) -> float | None:
    """median over repeats of top/bottom, each pair from the same repeat."""
    by_repeat: dict[int, list[float | None]] = {}
    for phase, path, slot in ((top[0], top[1], 0), (bottom[0], bottom[1], 1)):
        for r in runs(results, size, phase):
            by_repeat.setdefault(r["repeat"], [None, None])[slot] = get(r, *path)
    values = [a / b for a, b in by_repeat.values() if a is not None and b]
    return statistics.median(values) if values else None


def sizes(results: Results) -> list[int]:
    return sorted({r["size"] for r in results["runs"] if r["phase"] != "overload"})


def levels(results: Results, size: int) -> list[int]:
    found = {
        int(m.group(1))
        for r in runs_all(results, size)
        if (m := re.fullmatch(r"paced-(\d+)", r["phase"]))
    }
    return sorted(found)


def runs_all(results: Results, size: int) -> list[dict[str, Any]]:
    return [r for r in results["runs"] if r["size"] == size]


# ------------------------------------------------------------------------ formatting


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------ targets


@dataclass(frozen=True, slots=True)
class Target:
    what: str
    goal: str
    measured: str
    passed: bool | None  # None: not measurable in this run
    where: str


def _verdict(passed: bool | None) -> str:
    return {True: "**pass**", False: "**FAIL**", None: "n/a"}[passed]


def _check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(value)


def _at(size: int, wanted: int | None = MILLION) -> str:
    label = f"{size:,} patients"
    return (
        label if wanted is None or size == wanted else f"{label} (target is at {wanted:,}: not run)"
    )


def hit_ratio(results: Results, size: int) -> tuple[float | None, str]:
    """The Zipf run's profile hit ratio from the service's counters after the run's warm-up
    (else over the whole run), else the repeat share."""
    for path, source in (
        (("cache_in_window", "profile"), "service counters, after the warm-up"),
        (("service", "cache", "profile"), "service counters, whole run"),
    ):
        measured = []
        for r in runs(results, size, "zipf-cached"):
            counts = get(r, *path)
            if counts and sum(counts.values()):
                measured.append(counts["hit"] / sum(counts.values()))
        if measured:
            return statistics.median(measured), source
    return med(results, size, "zipf-cached", "zipf", "repeat_share"), (
        "estimate: share of repeat requests (the cache counters were absent or zero)"
    )


def targets(results: Results) -> list[Target]:
    all_sizes = sizes(results)
    big, small = all_sizes[-1], all_sizes[0]
    top = max(levels(results, big) or [50])
    p95 = med(results, big, f"paced-{top}", "endpoints", "search", "p95")
    p99 = med(results, big, f"paced-{top}", "endpoints", "search", "p99")
    per_user = med(results, big, f"paced-{top}", "endpoints", "search", "per_s")
    lookup_db = med(results, big, f"paced-{top}-uncached", "service", "lookup_db_p99_ms")
    db_max = med(results, big, f"paced-{top}-uncached", "database_side", "max_ms")
    db_mean = med(results, big, f"paced-{top}-uncached", "database_side", "mean_ms")
    db_calls = med(results, big, f"paced-{top}-uncached", "database_side", "calls")
    cached_vs_health = ratio(
        results,
        big,
        ("max-lookup-cached", ("endpoints", "lookup", "per_s")),
        ("max-healthz", ("endpoints", "healthz", "per_s")),
    )
    ours_vs_seed = ratio(
        results,
        big,
        ("max-search-uncached", ("endpoints", "search", "per_s")),
        ("sql-seed", ("endpoints", "sql.seed", "per_s")),
    )
    degradation = ratio(
        results,
        big,
        (f"paced-{top}", ("endpoints", "search", "p95")),
        ("paced-1", ("endpoints", "search", "p95")),
    )
    small_p95 = med(results, small, f"paced-{top}", "endpoints", "search", "p95")
    growth = p95 / small_p95 if p95 is not None and small_p95 and big != small else None
    imported = results["datasets"].get(str(MILLION)) or results["datasets"].get(str(big), {})
    import_s = imported.get("import_s")
    import_size = imported.get("size", big)
    hits, hits_source = hit_ratio(results, big)
    cached_p99 = med(results, big, "zipf-cached", "zipf", "repeat", "p99")
    rate_note = f"; {per_user / top:.2f} searches/s per user" if per_user else ""
    return [
        Target(
            f"search p95 / p99, HTTP end to end, {top} paced users",
            "≤ 25 ms / ≤ 50 ms",
            f"{ms(p95)} / {ms(p99)} ms",
            None if p95 is None or p99 is None else p95 <= 25 and p99 <= 50,
            _at(big) + rate_note,
        ),
        Target(
            "lookup by id, database time p99",
            "≤ 2 ms",
            f"≤ {ms(db_max)} ms" if db_max is not None else f"{ms(lookup_db)} ms",
            _check(db_max if db_max is not None else lookup_db, lambda v: v <= 2),
            _at(big, None)
            + f", {top} paced users, cache off: "
            + (
                f"PostgreSQL's own execution time (pg_stat_statements) of {rate(db_calls)} "
                f"lookups, mean {ms(db_mean)} ms, max {ms(db_max)} ms (the max bounds the p99); "
                if db_max is not None
                else ""
            )
            + f"the service's `patient.get` histogram p99, which adds the worker's event-loop "
            f"wait, {ms(lookup_db)} ms",
        ),
        Target(
            "cached lookup throughput ÷ /healthz, 50 closed-loop clients",
            "≥ 0.5×",
            times(cached_vs_health),
            _check(cached_vs_health, lambda v: v >= 0.5),
            _at(big, None),
        ),
        Target(
            "uncached search throughput ÷ seed FTS SQL alone, 50 clients",
            "≥ 1.5×",
            times(ours_vs_seed),
            _check(ours_vs_seed, lambda v: v >= 1.5),
            _at(big, None) + "; ours over HTTP, seed in the database only",
        ),
        Target(
            f"search p95 at {top} users ÷ at 1 user, paced",
            "≤ 1.5",
            times(degradation),
            _check(degradation, lambda v: v <= 1.5),
            _at(big, None),
        ),
        Target(
            f"search p95 at {big:,} ÷ at {small:,} patients ({top} paced users)",
            "≤ 2 (1M ÷ 10k)",
            times(growth),
            _check(growth, lambda v: v <= 2) if big == MILLION and small == 10_000 else None,
            "growth over the sizes run" if big != MILLION else "",
        ),
        Target(
            "import including index builds",
            "≤ 120 s at 1M",
            f"{import_s:.1f} s ({imported.get('import_rows_per_s', 0):,} rows/s)"
            if import_s
            else "n/a",
            _check(import_s, lambda v: v <= 120) if import_size == MILLION else None,
            _at(import_size),
        ),
        Target(
            f"Zipf (s = {results['meta'].get('zipf_s')}) lookups over the day's "
            f"{results['meta'].get('zipf_patients') or 'whole clinic'} patients: "
            "profile cache hit ratio",
            "≥ 90 %",
            pct(hits),
            _check(hits, lambda v: v >= 0.9),
            _at(big, None) + f"; {hits_source}",
        ),
        Target(
            "cached lookup p99 over HTTP, 50 concurrent clients",
            "≤ 5 ms",
            f"{ms(cached_p99)} ms",
            _check(cached_p99, lambda v: v <= 5),
            _at(big, None) + ", repeat look-ups of the Zipf run (served from the cache)",
        ),
    ]


def headline(results: Results) -> str:
    """The targets table (what the README quotes)."""
    rows = [[t.what, t.goal, t.measured, _verdict(t.passed), t.where] for t in targets(results)]
    return table(["target", "goal", "measured", "", "where"], rows, "llrll")


def update_readme(results: Results) -> bool:
    """Replace the README's benchmark block (between the markers); False when they are absent."""
    text = README.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        print(f"README.md has no {README_BEGIN} block; not updated", file=sys.stderr)
        return False
    meta = results["meta"]
    day = meta["started"][:10]
    intro = textwrap.fill(
        f"Measured with `{meta['command']}` ({day}, {meta['machine']['cores']} cores shared by "
        f"client, server and database, load average {meta['loadavg_start'][0]:.1f} at the start; "
        f"medians of {meta['plan']['repeats']} repeat(s); full report in "
        f"`bench/results/{day}/report.md`):",
        width=108,
    )
    block = f"{README_BEGIN}\n{intro}\n\n{headline(results)}\n{README_END}"
    before, rest = text.split(README_BEGIN, 1)
    _, after = rest.split(README_END, 1)
    README.write_text(before + block + after, encoding="utf-8")
    return True


# ------------------------------------------------------------------------ sections


def _latency_cells(results: Results, size: int, phase: str, endpoint: str) -> list[str]:
    def m(field: str) -> float | None:
        return med(results, size, phase, "endpoints", endpoint, field)

    return [
        rate(m("per_s")),
        ms(m("p50")),
        ms(m("p95")),
        ms(m("p99")),
        ms(m("max")),
        rate(m("errors")),
    ]


def imports(results: Results) -> str:
    rows = []
    for key, d in sorted(results["datasets"].items(), key=lambda kv: int(kv[0])):
        rows.append(
            [
                f"{int(key):,}",
                f"{d['import_s']:.1f}",
                f"{d['import_rows_per_s']:,}",
                f"{d['import_reported_s']:.1f}",
                f"{d['analyze_s']:.1f}",
                f"{d['seed_index_s']:.1f}",
                d["imported_at"],
                "reused" if d.get("reused") else "this run",
            ]
        )
    return table(
        [
            "patients",
            "import s",
            "rows/s",
            "importer's own s",
            "ANALYZE s",
            "seed FTS index s",
            "imported",
            "data set",
        ],
        rows,
    )


def side_by_side(results: Results, size: int) -> str:
    rows = []
    seed_rate = med(results, size, "sql-seed", "endpoints", "sql.seed", "per_s")
    for label, phase, endpoint in (
        ("ours, HTTP end to end, cache off", "max-search-uncached", "search"),
        ("ours, HTTP end to end, cache on (hot queries)", "max-search-cached", "search"),
        ("seed `plainto_tsquery` SQL, database only (GIN index)", "sql-seed", "sql.seed"),
        ("naive `ILIKE '%…%'` SQL, database only (no index)", "sql-naive", "sql.naive"),
    ):
        cells = _latency_cells(results, size, phase, endpoint)
        vs = ratio(
            results,
            size,
            (phase, ("endpoints", endpoint, "per_s")),
            ("sql-seed", ("endpoints", "sql.seed", "per_s")),
        )
        rows.append([label, *cells, times(vs) if seed_rate else "n/a"])
    return table(
        ["engine", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "÷ seed"], rows
    )


def ceilings(results: Results, size: int) -> str:
    rows = []
    for label, phase, endpoint in (
        ("`/healthz` (HTTP ceiling)", "max-healthz", "healthz"),
        ("lookup by id, cached", "max-lookup-cached", "lookup"),
        ("lookup by id, cache off", "max-lookup-uncached", "lookup"),
        ("search, cached (hot queries)", "max-search-cached", "search"),
        ("search, cache off", "max-search-uncached", "search"),
        ("duplicate check (`/match`), never cached", "max-match-uncached", "match"),
    ):
        vs = ratio(
            results,
            size,
            (phase, ("endpoints", endpoint, "per_s")),
            ("max-healthz", ("endpoints", "healthz", "per_s")),
        )
        share = med(results, size, phase, "service", "db_share")
        rows.append([label, *_latency_cells(results, size, phase, endpoint), times(vs), pct(share)])
    return table(
        [
            "closed loop, 50 clients",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "errors",
            "÷ healthz",
            "db share",
        ],
        rows,
    )


def front_desk(results: Results, size: int) -> str:
    rows = []
    phases = [f"paced-{u}" for u in levels(results, size)]
    top = max(levels(results, size) or [50])
    phases.append(f"paced-{top}-uncached")
    for phase in phases:
        if not runs(results, size, phase):
            continue
        users = runs(results, size, phase)[0]["users"]
        names = sorted(
            {n for r in runs(results, size, phase) for n in r["endpoints"] if n != "all"}
        )
        for endpoint in names:
            label = f"{users} user{'s' * (users != 1)}"
            label += " (cache off)" if phase.endswith("uncached") else ""
            rows.append([label, f"`{endpoint}`", *_latency_cells(results, size, phase, endpoint)])
    return table(
        ["load", "request", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"],
        rows,
        "llrrrrrr",
    )


def degradation(results: Results, size: int) -> str:
    rows = []
    for users in levels(results, size):
        phase = f"paced-{users}"
        vs = ratio(
            results,
            size,
            (phase, ("endpoints", "search", "p95")),
            ("paced-1", ("endpoints", "search", "p95")),
        )
        per_s = med(results, size, phase, "endpoints", "search", "per_s")
        rows.append(
            [
                str(users),
                f"{per_s / users:.2f}" if per_s else "n/a",
                ms(med(results, size, phase, "endpoints", "search", "p50")),
                ms(med(results, size, phase, "endpoints", "search", "p95")),
                ms(med(results, size, phase, "endpoints", "search", "p99")),
                times(vs),
            ]
        )
    return table(
        ["paced users", "searches/s per user", "p50 ms", "p95 ms", "p99 ms", "p95 ÷ 1 user"], rows
    )


def growth(results: Results) -> str:
    all_sizes = sizes(results)
    top = max(levels(results, all_sizes[0]) or [50])
    base = med(results, all_sizes[0], f"paced-{top}", "endpoints", "search", "p95")
    rows = []
    for size in all_sizes:
        p95 = med(results, size, f"paced-{top}", "endpoints", "search", "p95")
        rows.append(
            [
                f"{size:,}",
                ms(med(results, size, f"paced-{top}", "endpoints", "search", "p50")),
                ms(p95),
                ms(med(results, size, f"paced-{top}", "endpoints", "search", "p99")),
                times(p95 / base if p95 is not None and base else None),
                ms(med(results, size, "max-search-uncached", "endpoints", "search", "p95")),
                ms(med(results, size, "sql-seed", "endpoints", "sql.seed", "p95")),
                ms(med(results, size, f"paced-{top}-uncached", "service", "lookup_db_p99_ms")),
                ms(med(results, size, "max-lookup-uncached", "service", "lookup_db_p99_ms")),
            ]
        )
    return table(
        [
            "patients",
            f"search p50 ({top} paced)",
            "p95",
            "p99",
            "p95 ÷ smallest",
            "uncached closed-loop p95",
            "seed SQL p95",
            f"lookup db p99 ({top} paced)",
            "lookup db p99 (closed loop)",
        ],
        rows,
    )


def zipf(results: Results, size: int) -> str:
    hits, source = hit_ratio(results, size)
    rows = []
    for label, phase, part in (
        ("cache on: repeat look-ups (cache hits)", "zipf-cached", "repeat"),
        ("cache on: first look-up of a patient (misses)", "zipf-cached", "first"),
        ("cache off: every look-up", "zipf-uncached", None),
    ):
        path = ("zipf", part) if part else ("endpoints", "lookup.zipf")

        def m(field: str, phase: str = phase, path: tuple[str, ...] = path) -> float | None:
            return med(results, size, phase, *path, field)

        rows.append([label, rate(m("n")), ms(m("p50")), ms(m("p95")), ms(m("p99")), ms(m("max"))])
    distinct = med(results, size, "zipf-cached", "zipf", "distinct_patients")
    total = med(results, size, "zipf-cached", "endpoints", "lookup.zipf", "n")
    note = (
        f"Profile cache hit ratio: **{pct(hits)}** ({source}; Zipf over the day's "
        f"{results['meta'].get('zipf_patients') or 'whole clinic'} patients). Share of repeat "
        f"requests in the whole run, cold start included: "
        f"{pct(med(results, size, 'zipf-cached', 'zipf', 'repeat_share'))}; "
        f"{rate(distinct)} distinct patients."
    )
    return table(["lookups", "n (window)", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows) + (
        f"\n\n{note}" + (f" Window: {rate(total)} look-ups." if total else "")
    )


def service_side(results: Results, size: int) -> str:
    rows = []
    phases = sorted(
        {r["phase"] for r in runs_all(results, size) if r.get("service")}, key=_phase_order
    )
    for phase in phases:

        def m(*path: str, phase: str = phase) -> float | None:
            return med(results, size, phase, "service", *path)

        peaks = [
            value
            for r in runs(results, size, phase)
            for value in (get(r, "service", "rss_peak_by_worker") or {}).values()
        ]
        pool_max = m("pool_max")
        rows.append(
            [
                phase,
                mb(max(peaks) if peaks else None),
                ms(m("acquire_p95_ms")),
                f"{rate(m('pool_peak_in_use'))} / {rate(pool_max)}",
                rate(m("pool_peak_waiting")),
                pct(m("cache_hit_ratio")),
                pct(m("db_share")),
            ]
        )
    return table(
        [
            "run",
            "peak RSS per worker MiB",
            "acquire wait p95 ms",
            "peak in use / max",
            "peak waiters",
            "cache hit ratio",
            "db share of request time",
        ],
        rows,
    )


_ORDER = (
    "paced",
    "max-healthz",
    "max-lookup-cached",
    "max-search-cached",
    "zipf-cached",
    "max-lookup-uncached",
    "max-search-uncached",
    "max-match-uncached",
    "zipf-uncached",
    "sql",
    "overload",
)


def _phase_order(phase: str) -> tuple[int, str]:
    for i, prefix in enumerate(_ORDER):
        if phase.startswith(prefix):
            return i, phase
    return len(_ORDER), phase


def overload(results: Results) -> str:
    found = [r for r in results["runs"] if r["phase"] == "overload"]
    if not found:
        return "Not run."
    r = found[0]
    o = r["overload"]
    config = r.get("config", {})
    timeout_ms = (config.get("acquire_timeout_s") or 0) * 1000
    share = o["unavailable"] / o["requests"] if o["requests"] else None
    bound_ms = timeout_ms + 1000
    checks = [
        (
            "requests that got 503",
            f"{o['unavailable']:,} of {o['requests']:,} ({pct(share)})",
            o["unavailable"] > 0,
        ),
        (
            "503s without Retry-After",
            f"{o['unavailable_without_retry_after']:,}",
            o["unavailable_without_retry_after"] == 0,
        ),
        (
            "other errors (timeouts, 5xx but 503, connection errors)",
            f"{o['other_errors']:,}",
            o["other_errors"] == 0,
        ),
        ("requests still waiting at the end (hangs)", f"{r['hung']:,}", r["hung"] == 0),
        (
            f"slowest 503 (acquire timeout {timeout_ms:.0f} ms; bound {bound_ms:.0f} ms)",
            f"{ms(o['unavailable_max_ms'])} ms (median {ms(o['unavailable_p50_ms'])} ms)",
            o["unavailable_max_ms"] <= bound_ms,
        ),
        ("slowest request of any kind", f"{ms(o['max_ms'])} ms", o["max_ms"] <= bound_ms + 1000),
    ]
    rows = [[what, value, _verdict(ok)] for what, value, ok in checks]
    return (
        f"{r['size']:,} patients; pool {config.get('pool_max')} per worker × 2 workers, "
        f"acquire timeout {config.get('acquire_timeout_s')} s, cache off; {r['users']} "
        f"closed-loop clients sending uncached searches for {r['duration_s']} s.\n\n"
        + table(["check", "measured", ""], rows, "lrl")
    )


def _how_run(meta: dict[str, Any]) -> str:
    plan = meta["plan"]
    elapsed = int(meta.get("elapsed_s", 0))
    sizes_run = ", ".join(f"{s:,}" for s in plan["sizes"])
    return (
        f"Command: `{meta['command']}` — {elapsed // 60} min {elapsed % 60} s. "
        f"Code: commit `{meta['commit']}`, working tree `{meta['source_digest']}` "
        f"(sha256 of src/ and migrations/). Sizes {sizes_run}; {plan['repeats']} repeat(s); "
        f"closed-loop runs {plan['closed_s']} s, paced {plan['paced_s']} s "
        f"(1 user: {plan['single_user_s']} s), Zipf {plan['zipf_s']} s; "
        f"the first {plan['warmup_s']} s of every run are not measured."
    )


def _machine(meta: dict[str, Any], all_runs: list[dict[str, Any]]) -> str:
    m = meta["machine"]
    per_run = ", ".join(f"{r['loadavg']:.1f}" for r in all_runs)
    end = meta.get("loadavg_end") or [0.0]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}, Locust {m['locust']}. "
        "Client (Locust, one process), server (2 uvicorn workers) and PostgreSQL share these "
        f"cores. Load average at start {meta['loadavg_start'][0]:.1f}, at end {end[0]:.1f} "
        f"(1-minute load after each run: {per_run})."
    )


def count_check(results: Results) -> str:
    """Runs whose recorded samples disagree with Locust's own count by more than 1 %."""
    odd = [
        f"{r['size']:,} {r['phase']} #{r['repeat']}: {r['samples']:,} vs {r['locust_requests']:,}"
        for r in results["runs"]
        if r.get("locust_requests")
        and abs(r["samples"] - r["locust_requests"]) > 0.01 * r["samples"]
    ]
    if not odd:
        return "Recorded requests match Locust's own counts in every run (within 1 %)."
    return "Recorded requests differ from Locust's own counts: " + "; ".join(odd) + "."


def render(results: Results, images: dict[str, str]) -> str:
    meta = results["meta"]
    parts = [
        f"# Benchmark — {meta['started'][:10]}",
        "",
        _how_run(meta),
        "",
        _machine(meta, results["runs"]),
        "",
        "## Targets",
        "",
        headline(results),
        "",
        count_check(results),
        "",
        "## Import (the real path: `patient-search import FILE.csv`)",
        "",
        imports(results),
        "",
        IMPORT_NOTE,
        "",
    ]
    for size in sizes(results):
        parts += [
            f"## {size:,} patients",
            "",
            "### Search side by side (closed loop, 50 clients, the same name queries, limit 10)",
            "",
            side_by_side(results, size),
            "",
            "### Throughput against the HTTP ceiling",
            "",
            ceilings(results, size),
            "",
            "### Front desk (paced): degradation with users",
            "",
            degradation(results, size),
            "",
            front_desk(results, size),
            "",
            "### Zipf check-in lookups",
            "",
            zipf(results, size),
            "",
            "### Service side, per run (from /metrics and psutil)",
            "",
            service_side(results, size),
            "",
        ]
    parts += [
        "## Growth with the data set",
        "",
        growth(results),
        "",
        "## Overload: pool exhaustion answers 503 + Retry-After, never hangs",
        "",
        overload(results),
        "",
        "## Plots",
        "",
        *[f"![{title}]({name})\n" for title, name in images.items()],
        "## How to read this",
        "",
        METHOD,
    ]
    return "\n".join(parts) + "\n"


IMPORT_NOTE = """\
Import time is the wall time of the `patient-search import` process on the generated CSV, into a
freshly migrated database; its indexes are maintained as the rows arrive, so it includes the index
work. ANALYZE and the seed's full-text index (for the SQL baseline only) are timed apart."""

METHOD = """\
- **Noise.** Everything runs on one small machine that other jobs share; absolute times move by
  tens of percent between runs. Compare ratios (each taken within one repeat) and medians of
  repeats, not single figures. The load average per run is listed above.
- **Front desk (paced).** Each Locust user is a receptionist with their own token:
  search-as-you-type (a key every 80–300 ms; the box sends the text typed so far after a 250 ms
  pause, and the full text at the end), full-name (every name-query kind of `bench/relevance.py`:
  typos, nicknames, sound-alikes, accents, `Last, First`), name + date of birth, phone and MRN
  searches, then the first hit's profile (80 %), and now and then an update (GET, then PATCH with
  If-Match). 0.3–1.2 s between actions, 0.2–0.8 s reading the hits. `search` aggregates every
  `search.*` request. The target's "~1 search/s" per user is checked: the rate achieved is shown.
- **Closed loop.** 50 clients with no think time, one endpoint each run. Cached lookups cycle over
  1,000 sampled ids and cached searches over 300 name queries, all fetched once before; the
  uncached runs use a server with `PATIENT_SEARCH_CACHE_ENABLED=false` and every name query.
  Search requests use `limit=10`, the limit of the baseline SQL.
- **Baselines.** The seed's SQL and the naive ILIKE are `bench/relevance.py`'s strings (ordered by
  name, LIMIT 10), run verbatim against `patients` by `bench/sql_baselines.py`: 50 asyncio clients
  over a psycopg pool of 50, as superuser (no row-level security, as in the seed), `jit=off` and
  no parallel workers (the service's session settings). The seed's design had a GIN full-text
  index; it is created in the benchmark databases only (`bench_seed_fts`), so the seed runs with
  it. The naive ILIKE has no index (that is what makes it naive).
- **Zipf lookups.** 50 clients, each looking a patient up at Poisson times 0.2 s apart on average
  (not in step with one another); patient popularity follows Zipf over a day's roster — the first
  `ZIPF_PATIENTS` (1,000) ids of a fixed random order of the clinic, the day's appointments — not
  over the whole clinic, where most look-ups would be first sightings no cache can hit (measured at
  1M: 56.1 % hits against a 56.4 % share of repeats). The clinic's cache keys are dropped just
  before; the first `zipf_warmup_s` of the run fill the cache as the day's first minutes would and
  are not measured: the hit ratio is the profile cache's counters after it. With a 300 s profile
  lifetime longer than the run and no writes, the first request of each patient is a miss and every
  repeat a hit: that split gives the cached and uncached latencies. The plot shows the share of
  repeats over the whole run, cold start included.
- **Overload.** A server whose pool has 1 connection per worker and a 0.1 s acquire timeout,
  driven by 100 closed-loop clients with uncached searches. Pass: some requests get 503, every 503
  carries Retry-After, nothing else fails, nothing is still waiting when the run ends (Locust's
  own timeout is 15 s), and the slowest 503 stays within the acquire timeout + 1 s (the event loop
  of a saturated 2-core machine adds queueing before and after the wait).
- **Checks.** Every request is recorded by the locustfile (`raw/*.samples.csv`, kept out of git);
  Locust's own printed summary is kept beside them (`raw/*.locust.log`, with its CSVs), and runs
  whose counts differ by more than 1 % are listed under the targets.
- **Service side.** Database share = time in SQL statements ÷ time in requests (the service's own
  histograms, `/metrics`, `/healthz` and `/readyz` excluded). Pool peaks are the highest of the
  once-a-second scrapes of gauges the workers sample every 0.5 s, summed over the 2 workers (max
  is the sum of both pools). RSS is psutil's, per worker process.
- **Rate limit.** The per-user search limit stays on (its Redis round trip is paid by every
  search) but is set to 1,000,000/min so that the closed-loop clients measure the search, not the
  limiter.
"""


def main() -> None:
    out = Path(sys.argv[1])
    results = json.loads((out / "results.json").read_text())
    images = {p.stem.replace("_", " "): p.name for p in sorted(out.glob("*.png"))}
    (out / "report.md").write_text(render(results, images), encoding="utf-8")
    print(headline(results))


if __name__ == "__main__":
    main()
