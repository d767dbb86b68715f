"""The benchmark's data sets: generated once, imported through the real import path, reused.

For each size N:
- the patients are generated once (`seeding.generator`, fixed seed) into
  `.data/bench/patients-N-seedS.csv`;
- the database `patient_search_bench_N` is created and migrated (the migration is re-applied on
  every run, a no-op at head) and the CSV is loaded by `patient-search import` in a subprocess,
  timed from the outside: that is the import time the report quotes;
- a marker `.data/bench/patient_search_bench_N.json` records what was loaded, how long it took
  and by which code, so later runs skip the import (`reimport=True` forces it).

The seed's GIN full-text index is created in these databases only, so that the seed's SQL
(`sql_baselines.py`) runs with the index its design had.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from psycopg import sql
from pydantic import PostgresDsn

sys.path.insert(0, str(Path(__file__).parent))
import relevance  # noqa: E402  (a sibling script: the database helpers and the seed's SQL)

from patient_search import cli  # noqa: E402
from patient_search.seeding.generator import IMPORT_FIELDS, generate_patients  # noqa: E402
from patient_search.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / ".data" / "bench"
CLINIC = "bench"
MRN_PREFIX = "B-"
SEED = 11
SEED_FTS_INDEX = "bench_seed_fts"
# The seed's full-text expression exactly as its SQL spells it, so the planner can use the index.
SEED_FTS_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {SEED_FTS_INDEX} ON patients USING gin ({relevance._TSVECTOR})"
)
_ROWS_PER_S = re.compile(r"inserted (\d+), updated (\d+), rejected (\d+) in ([\d.]+) s")


@dataclass(frozen=True, slots=True)
class Dataset:
    """One imported data set and how it got there."""

    size: int
    seed: int
    database: str
    url: str
    csv_path: str
    generate_s: float
    import_s: float  # wall time of `patient-search import`, process start to exit
    import_rows_per_s: float
    import_reported_s: float  # what the importer itself printed (excludes process start-up)
    analyze_s: float
    seed_index_s: float
    imported_at: str
    commit: str
    source_digest: str
    reused: bool = False


def database_name(size: int) -> str:
    return f"patient_search_bench_{size}"


def _marker_path(size: int) -> Path:
    return DATA_DIR / f"{database_name(size)}.json"


def code_version() -> tuple[str, str]:
    """(commit of HEAD read from .git, digest of src/ and migrations/ as they are now)."""
    commit = "unknown"
    with contextlib.suppress(OSError):
        head = (REPO / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head.removeprefix("ref: ")
            loose = REPO / ".git" / ref
            if loose.exists():
                commit = loose.read_text().strip()
            else:
                packed = (REPO / ".git" / "packed-refs").read_text().splitlines()
                commit = next((ln.split()[0] for ln in packed if ln.endswith(" " + ref)), commit)
        else:
            commit = head
    digest = hashlib.sha256()
    for root in ("src", "migrations"):
        for path in sorted((REPO / root).rglob("*.py")):
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return commit[:12], digest.hexdigest()[:12]


def generate_csv(size: int, seed: int) -> tuple[Path, float]:
    """The generated patients as an import file, written once; (path, seconds it took)."""
    path = DATA_DIR / f"patients-{size}-seed{seed}.csv"
    if path.exists():
        return path, 0.0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=IMPORT_FIELDS)
        writer.writeheader()
        for patient in generate_patients(size, seed=seed, mrn_prefix=MRN_PREFIX):
            writer.writerow(patient.as_import_row())
    partial.rename(path)
    return path, time.perf_counter() - started


def _server_url() -> str:
    return str(Settings().database_url)


def _recreate_database(database: str) -> str:
    server = _server_url()
    name = sql.Identifier(database)
    relevance._admin(server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    relevance._admin(server, sql.SQL("CREATE DATABASE {}").format(name))
    return relevance._database_url(server, database)


def _migrate(url: str) -> None:
    with contextlib.redirect_stdout(sys.stderr):
        cli.migrate(Settings(database_url=PostgresDsn(url)))


def _live_patients(url: str) -> int:
    rows = relevance._admin(
        url,
        sql.SQL("SELECT count(*) FROM patients WHERE clinic_id = %s AND deleted_at IS NULL"),
        (CLINIC,),
    )
    return int(rows[0][0])


def _run_import(url: str, path: Path) -> tuple[float, float]:
    """`patient-search import` as a user runs it; (wall seconds, seconds it reported)."""
    env = {**os.environ, "PATIENT_SEARCH_DATABASE_URL": url, "PATIENT_SEARCH_ENV": "dev"}
    started = time.perf_counter()
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "patient-search"), "import", str(path), "--clinic", CLINIC],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    summary = _ROWS_PER_S.search(done.stdout)
    if done.returncode != 0 or summary is None:
        tail = (done.stdout + done.stderr)[-2000:]
        raise RuntimeError(f"import of {path.name} failed (exit {done.returncode}):\n{tail}")
    return wall, float(summary.group(4))


def _timed_admin(url: str, statement: str) -> float:
    started = time.perf_counter()
    relevance._admin(url, sql.SQL(statement))
    return time.perf_counter() - started


def _load_marker(size: int) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        marker: dict[str, Any] = json.loads(_marker_path(size).read_text())
        return marker
    return None


def _database_exists(database: str) -> bool:
    return relevance._database_comment(_server_url(), database) is not None


def prepare(size: int, seed: int = SEED, reimport: bool = False) -> Dataset:
    """The data set of `size` patients, imported now or reused from an earlier run."""
    database = database_name(size)
    url = relevance._database_url(_server_url(), database)
    marker = _load_marker(size)
    if (
        not reimport
        and marker is not None
        and marker.get("seed") == seed
        and _database_exists(database)
    ):
        _migrate(url)
        if _live_patients(url) == size:
            fields = {k: v for k, v in marker.items() if k in Dataset.__dataclass_fields__}
            return Dataset(**{**fields, "url": url, "reused": True})
    csv_path, generate_s = generate_csv(size, seed)
    relevance.log(f"dataset: importing {size:,} patients into {database}")
    _marker_path(size).unlink(missing_ok=True)
    _recreate_database(database)
    _migrate(url)
    import_s, reported_s = _run_import(url, csv_path)
    loaded = _live_patients(url)
    if loaded != size:
        raise RuntimeError(f"{database}: imported {loaded} of {size} patients")
    analyze_s = _timed_admin(url, "ANALYZE")
    seed_index_s = _timed_admin(url, SEED_FTS_INDEX_SQL)
    commit, digest = code_version()
    dataset = Dataset(
        size=size,
        seed=seed,
        database=database,
        url=url,
        csv_path=str(csv_path.relative_to(REPO)),
        generate_s=round(generate_s, 2),
        import_s=round(import_s, 2),
        import_rows_per_s=round(size / import_s),
        import_reported_s=round(reported_s, 2),
        analyze_s=round(analyze_s, 2),
        seed_index_s=round(seed_index_s, 2),
        imported_at=dt.datetime.now().isoformat(timespec="seconds"),
        commit=commit,
        source_digest=digest,
    )
    _marker_path(size).write_text(json.dumps(asdict(dataset), indent=1) + "\n")
    relevance.log(
        f"dataset: {size:,} patients imported in {import_s:.1f} s "
        f"({dataset.import_rows_per_s:,} rows/s)"
    )
    return dataset
