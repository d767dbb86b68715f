"""What one search can cost: the worst 200-character `q` one can construct, next to typical
name searches, at scale, one request at a time, in-process.

Each hostile shape is sent several times (different letters each time); each typical kind is
the relevance suite's name queries. Reported per shape: median database time and median
whole-request time, and each hostile shape's median over the typical median (the contract:
at most 3x).

    .venv/bin/python bench/search_cost.py [--patients 1000000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import relevance  # noqa: E402
import search_latency  # noqa: E402

MAX_Q = 200
TYPICAL_KINDS = relevance.NAME_KINDS


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=n))


def hostile_shapes(rng: random.Random) -> dict[str, str]:
    """Every 200-character shape that multiplies the work of one search."""
    common = ["mar", "jo", "an", "li", "sa", "da", "ch", "ka"]
    return {
        "one 200-letter token": _letters(rng, MAX_Q),
        "8 tokens of 24 letters": " ".join(_letters(rng, 24) for _ in range(8)),
        "8 tokens of 8 letters, rest spaces": " ".join(_letters(rng, 8) for _ in range(8)),
        "8 common 2-3 letter prefixes": " ".join(rng.sample(common, 8)),
        "particles": " ".join(
            rng.choice(["de", "la", "van", "der", "del", "von"]) for _ in range(8)
        ),
        "short tokens joined in pairs": " ".join(_letters(rng, 4) for _ in range(40))[:MAX_Q],
        "names and a date, 200 chars": (
            " ".join(_letters(rng, 20) for _ in range(8)) + " 1967-03-12"
        )[:MAX_Q],
        "one letter repeated": rng.choice(string.ascii_lowercase) * MAX_Q,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    settings = relevance.prepare_database(args.patients, args.seed, search_latency.DATABASE)
    patients = relevance.load_patients(str(settings.database_url))
    rng = random.Random(args.seed)
    queries = relevance.derive_queries(patients, rng, args.repeats * 2)
    del patients
    shapes = [("typical", {"q": q.text}) for q in queries if q.kind in TYPICAL_KINDS]
    for _ in range(args.repeats):
        shapes += [(kind, {"q": q}) for kind, q in hostile_shapes(rng).items()]
    rng.shuffle(shapes)
    timings = asyncio.run(search_latency.measure(settings, shapes))
    typical_db = statistics.median(t[0] for t in timings["typical"])
    typical_total = statistics.median(t[1] for t in timings["typical"])
    print(f"search cost at {args.patients:,} patients (median of each shape; x typical)")
    print("| shape | n | database ms | x | whole request ms | x | statements |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, rows in sorted(timings.items(), key=lambda item: item[0] != "typical"):
        db = statistics.median(t[0] for t in rows)
        total = statistics.median(t[1] for t in rows)
        statements = statistics.median(t[2] for t in rows)
        print(
            f"| {kind} | {len(rows)} | {db:.2f} | {db / typical_db:.1f} | {total:.2f}"
            f" | {total / typical_total:.1f} | {statements:.0f} |"
        )


if __name__ == "__main__":
    main()
