"""What the load generators send, derived from the seeded data once per data set.

- `queries`: noisy query texts by kind, made by the relevance benchmark's `derive_queries` from a
  fixed random sample of the clinic's patients (full names, `Last, First`, prefixes, typos,
  nicknames, sound-alikes, accents, name + date of birth, phones in other formats, emails, MRNs);
- `hot_ids`: the first ids of that sample (closed-loop lookups, updates);
- `hot_searches`: a spread of the name queries (closed-loop cached searches);
- `match_bodies`: registrations of sampled patients with a typo (closed-loop duplicate checks);
- `ids_path`: every patient id of the clinic in a fixed random order — the popularity ranks of
  the Zipf lookup workload (rank 1 is the first line).

Cached under `.data/bench/` next to the data set's marker; no token is stored (the runner mints
one per server and passes it in the environment).
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
import relevance  # noqa: E402
from dataset import CLINIC, DATA_DIR, Dataset  # noqa: E402

SAMPLE_PATIENTS = 3000
PER_KIND = 300
# Closed-loop cached searches cycle over this many name queries, spread over the kinds.
HOT_SEARCHES = 300
# Closed-loop cached lookups cycle over this many of the sample's ids.
HOT_LOOKUPS = 1000
# Duplicate checks of the closed loop.
HOT_MATCHES = 1000
# Bumped when the file's shape changes, so an older cached file is rebuilt.
VERSION = 4
NAME_KINDS = relevance.NAME_KINDS
# What each front-desk action types, by kind of the relevance benchmark.
TYPE_AHEAD_KINDS = ("exact_full", "last_first_comma", "swapped")

_SAMPLE_SQL = relevance.PATIENT_ROWS_SQL + " ORDER BY md5(p.mrn || %(salt)s) LIMIT %(n)s"
_IDS_SQL = """
    SELECT id::text FROM patients WHERE clinic_id = %(clinic)s AND deleted_at IS NULL
    ORDER BY md5(id::text || %(salt)s)
"""


def _sample(url: str, n: int, seed: int) -> list[relevance.Patient]:
    """A fixed pseudo-random sample of the clinic (the same rows for the same data and seed)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(_SAMPLE_SQL, {"clinic": CLINIC, "salt": str(seed), "n": n}).fetchall()
    return [relevance.patient_from_row(r) for r in rows]


def _write_ids(url: str, path: Path, seed: int) -> None:
    partial = path.with_suffix(".partial")
    with psycopg.connect(url) as conn, partial.open("w", encoding="ascii") as out:
        cursor = conn.cursor(name="bench_ids")  # server-side: 1M ids need not sit in memory
        cursor.execute(_IDS_SQL, {"clinic": CLINIC, "salt": str(seed)})
        for (patient_id,) in cursor:
            out.write(patient_id + "\n")
    partial.rename(path)


def prepare(dataset: Dataset) -> Path:
    """The fixtures file of a data set (built on first use); its path."""
    path = DATA_DIR / f"fixtures-{dataset.size}-seed{dataset.seed}.json"
    ids_path = DATA_DIR / f"ids-{dataset.size}-seed{dataset.seed}.txt"
    if dataset.reused and ids_path.exists() and _version(path) == VERSION:
        return path
    sample = _sample(dataset.url, min(SAMPLE_PATIENTS, dataset.size), dataset.seed)
    queries: dict[str, list[str]] = defaultdict(list)
    for query in relevance.derive_queries(sample, random.Random(dataset.seed), PER_KIND):
        queries[query.kind].append(query.text)
    _write_ids(dataset.url, ids_path, dataset.seed)
    names = [text for kind in NAME_KINDS for text in queries.get(kind, [])]
    payload: dict[str, Any] = {
        "version": VERSION,
        "clinic": CLINIC,
        "size": dataset.size,
        "queries": dict(queries),
        "name_kinds": list(NAME_KINDS),
        "type_ahead_kinds": list(TYPE_AHEAD_KINDS),
        "hot_ids": [p.id for p in sample[:HOT_LOOKUPS]],
        "hot_searches": names[:: max(1, len(names) // HOT_SEARCHES)][:HOT_SEARCHES],
        "match_bodies": match_bodies(sample[:HOT_MATCHES], random.Random(dataset.seed)),
        "ids_path": str(ids_path),
    }
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def _dropped_letter(name: str, rng: random.Random) -> str:
    if len(name) < 5:
        return name
    i = rng.randrange(1, len(name) - 1)
    return name[:i] + name[i + 1 :]


def match_bodies(patients: list[relevance.Patient], rng: random.Random) -> list[dict[str, str]]:
    """Registrations of returning patients, as a clerk types them: the first name, the last
    name with one letter dropped, the date of birth (closed-loop `/v1/patients/match`)."""
    bodies = []
    for patient in patients:
        body = {
            "first_name": patient.first_name or "",
            "last_name": _dropped_letter(patient.last_name, rng),
            "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth else "",
        }
        bodies.append({k: v for k, v in body.items() if v})
    return bodies


def _version(path: Path) -> int | None:
    try:
        found: int | None = json.loads(path.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
    return found


def load(fixtures_path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixtures_path.read_text(encoding="utf-8"))
    return loaded


def name_queries(fixtures_path: Path) -> list[str]:
    """The name-bearing query texts: what the search side-by-side sends to every engine."""
    payload = load(fixtures_path)
    return [text for kind in NAME_KINDS for text in payload["queries"].get(kind, [])]
