"""The report's PNG plots, drawn from results.json with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from report import get, levels, med, runs, sizes  # noqa: E402

Results = dict[str, Any]
PERCENTILES = ("p50", "p95", "p99")


def _gaps(values: list[float | None]) -> list[float]:
    """None (not measured) as NaN, which matplotlib leaves out of a line."""
    return [float("nan") if v is None else v for v in values]


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def latency_vs_concurrency(results: Results, out: Path) -> str | None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for size in sizes(results):
        users = levels(results, size)
        for q, style in zip(PERCENTILES, ("-", "--", ":"), strict=True):
            values = [med(results, size, f"paced-{u}", "endpoints", "search", q) for u in users]
            if any(v is not None for v in values):
                ax.plot(users, _gaps(values), style, marker="o", label=f"{size:,} {q}")
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(
        xlabel="paced front-desk users",
        ylabel="search latency, ms (HTTP)",
        yscale="log",
        title="Search latency vs concurrency (paced)",
    )
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out, "latency_vs_concurrency.png")


def latency_vs_size(results: Results, out: Path) -> str | None:
    all_sizes = sizes(results)
    top = max(levels(results, all_sizes[0]) or [50])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"p50": ":", "p95": "-", "p99": "--"}
    for (label, phase, endpoint, quantiles), color in zip(
        (
            (f"search, {top} paced users", f"paced-{top}", "search", ("p50", "p95", "p99")),
            (f"profile, {top} paced users", f"paced-{top}", "profile", ("p95",)),
            ("search, closed loop, cache off", "max-search-uncached", "search", ("p95",)),
            ("seed FTS SQL, closed loop", "sql-seed", "sql.seed", ("p95",)),
        ),
        ("C0", "C1", "C2", "C3"),
        strict=True,
    ):
        for q in quantiles:
            values = [med(results, s, phase, "endpoints", endpoint, q) for s in all_sizes]
            if any(v is not None for v in values):
                ax.plot(
                    all_sizes,
                    _gaps(values),
                    styles[q],
                    color=color,
                    marker="o",
                    label=f"{label} {q}",
                )
    ax.set(
        xlabel="patients in the clinic",
        ylabel="latency, ms",
        xscale="log",
        yscale="log",
        title="Latency vs data set size",
    )
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out, "latency_vs_size.png")


THROUGHPUT_BARS = (
    ("/healthz", "max-healthz", "healthz"),
    ("lookup cached", "max-lookup-cached", "lookup"),
    ("lookup uncached", "max-lookup-uncached", "lookup"),
    ("search cached", "max-search-cached", "search"),
    ("search uncached", "max-search-uncached", "search"),
    ("seed FTS SQL", "sql-seed", "sql.seed"),
    ("naive ILIKE SQL", "sql-naive", "sql.naive"),
)


def throughput_vs_ceiling(results: Results, out: Path) -> str:
    all_sizes = sizes(results)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(all_sizes)
    for i, size in enumerate(all_sizes):
        values = [
            med(results, size, p, "endpoints", e, "per_s") or 0 for _, p, e in THROUGHPUT_BARS
        ]
        xs = [x + i * width for x in range(len(THROUGHPUT_BARS))]
        ax.bar(xs, values, width, label=f"{size:,} patients")
    ax.set_xticks([x + width * (len(all_sizes) - 1) / 2 for x in range(len(THROUGHPUT_BARS))])
    ax.set_xticklabels([label for label, _, _ in THROUGHPUT_BARS], rotation=20, fontsize=8)
    ax.set(
        ylabel="requests/s, 50 closed-loop clients",
        yscale="log",
        title="Throughput vs the HTTP ceiling (/healthz)",
    )
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, out, "throughput_vs_ceiling.png")


def _measured_hit_ratio(run: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Cumulative hits ÷ look-ups since the first scrape, from the service's counters."""
    timeline = get(run, "service", "timeline") or []
    start = next((row for row in timeline if row.get("cache_lookups") is not None), None)
    xs, ys = [], []
    for row in timeline:
        if start is None or row.get("cache_lookups") is None:
            continue
        looked = row["cache_lookups"] - start["cache_lookups"]
        if looked > 0:
            xs.append(row["t"])
            ys.append(100 * (row["cache_hits"] - start["cache_hits"]) / looked)
    return xs, ys


def cache_hit_ratio(results: Results, out: Path) -> str | None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for size, color in zip(sizes(results), ("C0", "C1", "C2", "C3"), strict=False):
        found = runs(results, size, "zipf-cached")
        if not found:
            continue
        run = found[0]
        xs, ys = _measured_hit_ratio(run)
        if xs:
            ax.plot(xs, ys, "-", color=color, label=f"{size:,} patients: service counters")
            drawn = True
        estimate = get(run, "zipf", "repeat_share_over_time") or []
        # The estimate counts from the first request, the counters from the first scrape.
        first_request = get(run, "zipf", "first_request_at")
        first_scrape = get(run, "service", "timeline_t0")
        offset = max(0.0, first_request - first_scrape) if first_request and first_scrape else 0.0
        if estimate:
            ax.plot(
                [e[0] + offset for e in estimate],
                [100 * e[1] for e in estimate],
                "--",
                color=color,
                label=f"{size:,} patients: share of repeat requests",
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(90, color="grey", linewidth=0.8)
    ax.set(
        xlabel="seconds since the cache was emptied",
        ylabel="cumulative hit ratio, %",
        ylim=(0, 100),
        title="Profile cache hit ratio over time (Zipf s = 1.1 lookups)",
    )
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _save(fig, out, "cache_hit_ratio.png")


def draw_all(results: Results, out: Path) -> dict[str, str]:
    """Every plot that has data; {title: file name}."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = {
        "Search latency vs concurrency": latency_vs_concurrency(results, out),
        "Latency vs data set size": latency_vs_size(results, out),
        "Throughput vs the HTTP ceiling": throughput_vs_ceiling(results, out),
        "Cache hit ratio over time": cache_hit_ratio(results, out),
    }
    return {title: name for title, name in drawn.items() if name}
