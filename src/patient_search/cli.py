"""The `patient-search` command: migrate, import, seed, token, serve."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psycopg
import sqlalchemy.exc
from psycopg_pool import PoolTimeout

from patient_search.auth.tokens import CLINIC_ID, READ_SCOPE, WRITE_SCOPE, issue_token
from patient_search.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from patient_search.importing.rows import RawRecord
    from patient_search.importing.service import ImportReport
    from patient_search.matching.model import Grade
    from patient_search.search.explain import ShapeReport

REPO_ROOT = Path(__file__).resolve().parents[2]


def _clinic_id(value: str) -> str:
    if not CLINIC_ID.match(value):
        raise argparse.ArgumentTypeError("clinic ids are 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patient-search", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply all database migrations (idempotent)")

    load = commands.add_parser("import", help="import patients from a .csv or .jsonl file")
    load.add_argument("file", type=Path)
    load.add_argument("--clinic", required=True, type=_clinic_id)

    seed = commands.add_parser("seed", help="generate and load synthetic patients")
    seed.add_argument("--patients", required=True, type=_positive)
    seed.add_argument("--clinics", type=_positive, default=1)
    seed.add_argument("--seed", type=int, default=0)
    seed.add_argument(
        "--if-empty", action="store_true", help="skip when the first clinic already has patients"
    )

    token = commands.add_parser("token", help="print a signed bearer token")
    token.add_argument("--clinic", required=True, type=_clinic_id)
    token.add_argument("--user", required=True)
    token.add_argument("--scope", default=f"{READ_SCOPE} {WRITE_SCOPE}")
    token.add_argument("--ttl", type=_positive, default=3600, help="lifetime in seconds")

    demo = commands.add_parser("demo-info", help="print a demo token and an example request")
    demo.add_argument("--clinic", required=True, type=_clinic_id)
    demo.add_argument("--port", type=int, default=8000)

    explain = commands.add_parser(
        "explain", help="EXPLAIN ANALYZE every query shape as the service role; fail on seq scans"
    )
    explain.add_argument("--clinic", required=True, type=_clinic_id)

    duplicates = commands.add_parser(
        "duplicates", help="write the clinic's suspected duplicate pairs to a CSV file"
    )
    duplicates.add_argument("--clinic", required=True, type=_clinic_id)
    duplicates.add_argument("--out", required=True, type=Path)
    duplicates.add_argument(
        "--min-grade", choices=["possible", "probable", "certain"], default="probable"
    )

    report = commands.add_parser(
        "db-report", help="top statements (pg_stat_statements) and current waits and contention"
    )
    report.add_argument("--top", type=_positive, default=10)

    audit = commands.add_parser(
        "audit", help="list the access audit of one patient: time, actor, action, request id"
    )
    audit.add_argument("--patient", required=True, type=uuid.UUID)
    audit.add_argument("--clinic", type=_clinic_id, help="read as the service role, in this clinic")
    audit.add_argument("--limit", type=_positive, default=1000)

    login = commands.add_parser(
        "service-login",
        help="print the environment that serves as an unprivileged login (dev: created)",
    )
    login.add_argument("--role", default=DEV_SERVICE_LOGIN, type=_clinic_id)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1)
    return parser


DEV_SERVICE_LOGIN = "patient_search_service"


def _revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(settings: Settings) -> tuple[str | None, str | None]:
    """Bring the database schema to the newest revision; the revisions before and after."""
    from alembic import command
    from alembic.config import Config

    url = settings.migration_conninfo
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    before = _revision(url)
    command.upgrade(config, "head")
    return before, _revision(url)


def grant_login(settings: Settings) -> str:
    """After migrating: the service's login made a member of the RLS-bound role (in dev,
    created when missing); what was done."""
    from patient_search.db.logins import grant_service_login

    return grant_service_login(
        settings.migration_conninfo, str(settings.database_url), create=settings.env == "dev"
    )


def service_login(settings: Settings, role: str) -> int:
    """Print PATIENT_SEARCH_MIGRATION_DATABASE_URL and PATIENT_SEARCH_DATABASE_URL lines for
    `env`: the configured login migrates, `role` serves. A configured login that is already
    unprivileged is kept. `make demo` serves this way."""
    from patient_search.db.logins import grant_service_login, privileged_login, with_login

    owner = settings.migration_conninfo
    service = str(settings.database_url)
    if privileged_login(service, settings.db_connect_timeout_s):
        service = with_login(service, role)
        done = grant_service_login(owner, service, create=settings.env == "dev")
        print(f"service-login: {done}", file=sys.stderr)
    print(f"PATIENT_SEARCH_MIGRATION_DATABASE_URL={owner}")
    print(f"PATIENT_SEARCH_DATABASE_URL={service}")
    return 0


def _refuse_privileged_login(settings: Settings) -> None:
    """Outside dev, never serve as a superuser or BYPASSRLS login."""
    from patient_search.db.logins import privileged_login

    if settings.env == "dev":
        return
    try:
        reason = privileged_login(str(settings.database_url), settings.db_connect_timeout_s)
    except psycopg.OperationalError:
        return  # the database is down: the service starts and waits for it (db/health.py)
    if reason:
        raise SettingsError(
            f"PATIENT_SEARCH_DATABASE_URL logs in as {reason}, which row-level security does"
            " not bind; log in as an ordinary role that is a member of patient_search_app"
            " (CREATE ROLE svc LOGIN; GRANT patient_search_app TO svc; docs/operations.md)"
            " and keep the owner for PATIENT_SEARCH_MIGRATION_DATABASE_URL"
        )


def _cli_settings(settings: Settings) -> Settings:
    # A command-line tool needs one or two connections, not the server's pool, and should
    # say quickly that the database is not there rather than wait the server's 30 s.
    return settings.model_copy(
        update={
            "db_pool_min": 1,
            "db_pool_max": 2,
            "db_pool_acquire_timeout_s": 5.0,
            # A bulk batch may legitimately run longer than the server's per-request limit.
            "db_statement_timeout_ms": 0,
        }
    )


async def _load(
    settings: Settings,
    clinic_id: str,
    records: Iterable[RawRecord],
    progress: Callable[[float], object],
) -> ImportReport:
    from patient_search.db.pool import build_pool
    from patient_search.importing.service import import_records

    async with build_pool(_cli_settings(settings)) as pool:
        return await import_records(
            pool,
            clinic_id,
            records,
            settings.phone_region,
            progress=progress,
            # The login role, before the pool's SET ROLE: an empty database loads in bulk.
            owner_conninfo=str(settings.database_url),
        )


def _run_import(
    settings: Settings, clinic_id: str, records: Iterable[RawRecord], label: str
) -> int:
    from tqdm import tqdm

    started = time.perf_counter()
    with tqdm(desc=label, unit=" rows", file=sys.stderr, disable=None) as bar:
        report = asyncio.run(_load(settings, clinic_id, records, bar.update))
    elapsed = time.perf_counter() - started
    for rejection in report.rejections:
        print(f"rejected line {rejection.line}: {rejection.reason}")
    loaded = report.inserted + report.updated
    print(
        f"{label}: inserted {report.inserted}, updated {report.updated}, "
        f"rejected {report.rejected} in {elapsed:.1f} s ({loaded / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    return 1 if report.rejected else 0


def import_file(settings: Settings, path: Path, clinic_id: str) -> int:
    """Import a file into a clinic; exit 0 all loaded, 1 some rejected, 2 file unusable."""
    from patient_search.importing.rows import UnusableFile, read_records

    records = read_records(path)
    try:
        first = next(records, None)
    except UnusableFile as exc:
        print(f"import: {exc}", file=sys.stderr)
        return 2
    if first is None:
        print("import: the file holds no records", file=sys.stderr)
        return 2
    return _run_import(settings, clinic_id, itertools.chain([first], records), path.name)


async def _clinic_has_patients(settings: Settings, clinic_id: str) -> bool:
    from patient_search.db.pool import build_pool
    from patient_search.db.statements import NullObserver, StatementRunner
    from patient_search.db.tenant import clinic_transaction
    from patient_search.importing.repository import ImportRepository

    async with build_pool(_cli_settings(settings)) as pool:
        async with clinic_transaction(pool, clinic_id, "read") as conn:
            return await ImportRepository(StatementRunner(conn, NullObserver())).has_patients()


def seed(settings: Settings, patients: int, clinics: int, seed_value: int, if_empty: bool) -> int:
    """Load `patients` synthetic patients spread over clinics `clinic-1` … `clinic-K`."""
    from patient_search.importing.rows import RawRecord
    from patient_search.seeding.generator import generate_patients

    if if_empty and asyncio.run(_clinic_has_patients(settings, "clinic-1")):
        print("seed: clinic-1 already has patients; nothing to do")
        return 0
    status = 0
    for index in range(1, clinics + 1):
        share = patients // clinics + (1 if index <= patients % clinics else 0)
        generated = generate_patients(
            share, seed=seed_value * 1000 + index, mrn_prefix=f"C{index}-"
        )
        records = (
            RawRecord(line, patient.as_import_row())
            for line, patient in enumerate(generated, start=2)
        )
        status = max(status, _run_import(settings, f"clinic-{index}", records, f"clinic-{index}"))
    return status


async def _example_patient_id(settings: Settings, clinic_id: str) -> str | None:
    from patient_search.db.pool import build_pool
    from patient_search.db.statements import NullObserver, StatementRunner
    from patient_search.db.tenant import clinic_transaction
    from patient_search.importing.repository import ImportRepository

    async with build_pool(_cli_settings(settings)) as pool:
        async with clinic_transaction(pool, clinic_id, "read") as conn:
            return await ImportRepository(StatementRunner(conn, NullObserver())).any_patient_id()


def demo_info(settings: Settings, clinic_id: str, port: int) -> int:
    """Print a ready-to-use token for the clinic and one example curl."""
    token = issue_token(
        settings.effective_jwt_secret, clinic_id=clinic_id, user_id="demo", ttl_s=12 * 3600
    )
    patient_id = asyncio.run(_example_patient_id(settings, clinic_id))
    path = f"/v1/patients/{patient_id}" if patient_id else "/readyz"
    print(f"\nBearer token for {clinic_id} (12 h):\n{token}\n")
    print("Try:")
    print(f'  curl -s -H "Authorization: Bearer {token}" http://127.0.0.1:{port}{path}\n')
    print(f"Front-desk page: http://127.0.0.1:{port}/ (paste the token above)")
    print(f"API docs: http://127.0.0.1:{port}/docs\n")
    return 0


async def _explain(settings: Settings, clinic_id: str) -> list[ShapeReport]:
    from patient_search.db.pool import build_pool
    from patient_search.search.explain import explain_all

    async with build_pool(_cli_settings(settings)) as pool:
        return await explain_all(pool, str(settings.database_url), clinic_id)


async def _duplicates(settings: Settings, clinic_id: str, out: Path, min_grade: Grade) -> int:
    from patient_search.db.pool import build_pool
    from patient_search.db.tenant import clinic_transaction
    from patient_search.matching.batch import save_model, scan, write_csv

    async with build_pool(_cli_settings(settings)) as pool:
        async with clinic_transaction(pool, clinic_id, "read") as conn:
            report = await scan(conn, min_grade)
        if report.model.source == "estimated":
            # The duplicate check at registration and /match weigh with it from now on.
            async with clinic_transaction(pool, clinic_id, "write") as conn:
                await save_model(conn, report.model)
    write_csv(out, report.pairs)
    print(
        f"duplicates: {len(report.pairs)} pairs graded {min_grade} or better written to {out}"
        f" ({report.compared} comparisons, {report.skipped_blocks} blocks over the size limit)",
        file=sys.stderr,
    )
    return 0


def find_duplicates(settings: Settings, clinic_id: str, out: Path, min_grade: str) -> int:
    """Scan a clinic for suspected duplicate pairs; exit 0, or 2 when the file cannot be written."""
    if not out.parent.is_dir():
        print(f"duplicates: {out.parent} is not a directory", file=sys.stderr)
        return 2
    try:
        out.open("a", encoding="utf-8").close()  # unwritable: said now, not after the scan
    except OSError as exc:
        print(f"duplicates: cannot write {out} ({exc.strerror})", file=sys.stderr)
        return 2
    return asyncio.run(_duplicates(settings, clinic_id, out, cast("Grade", min_grade)))


def explain(settings: Settings, clinic_id: str) -> int:
    """Print every query shape's plan; exit 1 when one scans a clinic's rows sequentially."""
    from patient_search.search.explain import format_reports

    try:
        reports = asyncio.run(_explain(settings, clinic_id))
    except LookupError as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return 2
    print(format_reports(reports))
    failing = [r.shape for r in reports if not r.ok]
    if failing:
        print(f"explain: sequential scans in {len(failing)} shape(s): {', '.join(failing)}")
        return 1
    print(f"explain: {len(reports)} shapes, all index-driven")
    return 0


async def _audit_entries(
    settings: Settings, patient_id: uuid.UUID, clinic_id: str | None, limit: int
) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    from patient_search.audit.repository import AuditRepository
    from patient_search.db.pool import build_pool
    from patient_search.db.statements import NullObserver, StatementRunner
    from patient_search.db.tenant import clinic_transaction

    if clinic_id is not None:
        async with build_pool(_cli_settings(settings)) as pool:
            async with clinic_transaction(pool, clinic_id, "read") as conn:
                repository = AuditRepository(StatementRunner(conn, NullObserver()))
                return await repository.list_for_patient(patient_id, clinic_id, limit)
    # Every clinic: the operator's listing, as the migration login (the tables' owner), since
    # the service's login sees one clinic at a time.
    async with await psycopg.AsyncConnection.connect(
        settings.migration_conninfo,
        connect_timeout=settings.db_connect_timeout_s,
        row_factory=dict_row,
        autocommit=True,
    ) as conn:
        repository = AuditRepository(StatementRunner(conn, NullObserver()))
        return await repository.list_for_patient(patient_id, None, limit)


def audit(settings: Settings, patient_id: uuid.UUID, clinic_id: str | None, limit: int) -> int:
    """Print who accessed a patient's record, oldest first; nothing of the record itself."""
    entries = asyncio.run(_audit_entries(settings, patient_id, clinic_id, limit))
    if not entries:
        hint = "" if clinic_id else " (a role under row-level security needs --clinic)"
        print(f"audit: no entries for patient {patient_id}{hint}")
        return 0
    rows = [
        (
            e["at"].astimezone(datetime.UTC).isoformat(timespec="milliseconds"),
            e["actor"],
            e["action"],
            e["request_id"] or "-",
        )
        for e in entries
    ]
    header = ("time (UTC)", "actor", "action", "request id")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    clinics = sorted({e["clinic_id"] for e in entries})
    print(f"audit: {len(rows)} entries for patient {patient_id} in clinic {', '.join(clinics)}")
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run the API under uvicorn (uvloop and httptools when installed)."""
    import uvicorn

    from patient_search.observability.logs import log_config
    from patient_search.observability.multiprocess import server_metrics

    settings.require_runnable()
    _refuse_privileged_login(settings)
    if workers > 1 and settings.cache_enabled and not settings.redis_url:
        # Each worker would keep its own in-process cache and serve what another worker has
        # just changed or archived. The workers read their settings from the environment.
        print(
            f"serve: {workers} workers and no PATIENT_SEARCH_REDIS_URL: the cache is off"
            " (set a Redis URL for a cache the workers share)",
            file=sys.stderr,
        )
        os.environ["PATIENT_SEARCH_CACHE_ENABLED"] = "false"
    # uvicorn re-raises a SIGTERM once it has drained and shut down; by then the shutdown was
    # clean, so exit 0 (also before uvicorn takes the signal over: nothing is in flight yet).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with server_metrics(settings, workers):
        uvicorn.run(
            "patient_search.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="auto",
            http="auto",
            access_log=False,
            # Applied in every worker: uvicorn's own loggers (its traceback of a failed
            # request) write the service's JSON lines, which never quote an exception.
            log_config=log_config(),
            proxy_headers=False,
            server_header=False,
            # SIGTERM: stop accepting, let in-flight requests finish (this long at most), then
            # run the lifespan's shutdown, which writes the audit trail and closes the pool.
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `patient-search` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"patient-search: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            before, after = migrate(settings)
            if before == after:
                print(f"migrate: already at revision {after}")
            else:
                print(f"migrate: upgraded from {before or 'an empty database'} to {after}")
            print(f"migrate: {grant_login(settings)}")
            return 0
        if args.command == "import":
            return import_file(settings, args.file, args.clinic)
        if args.command == "seed":
            return seed(settings, args.patients, args.clinics, args.seed, args.if_empty)
        if args.command == "demo-info":
            settings.require_runnable()
            return demo_info(settings, args.clinic, args.port)
        if args.command == "explain":
            return explain(settings, args.clinic)
        if args.command == "duplicates":
            return find_duplicates(settings, args.clinic, args.out, args.min_grade)
        if args.command == "audit":
            return audit(settings, args.patient, args.clinic, args.limit)
        if args.command == "db-report":
            from patient_search.observability import db_report

            print(db_report.run(str(settings.database_url), args.top))
            return 0
        if args.command == "service-login":
            return service_login(settings, args.role)
        if args.command == "token":
            settings.require_runnable()
            print(
                issue_token(
                    settings.effective_jwt_secret,
                    clinic_id=args.clinic,
                    user_id=args.user,
                    scopes=args.scope,
                    ttl_s=args.ttl,
                )
            )
            return 0
        serve(settings, args.host, args.port, args.workers)
        return 0
    except SettingsError as exc:
        print(f"patient-search: {exc}", file=sys.stderr)
        return 2
    except psycopg.errors.QueryCanceled:
        print("patient-search: a statement was cancelled (statement timeout)", file=sys.stderr)
        return 2
    except (PoolTimeout, psycopg.OperationalError, sqlalchemy.exc.OperationalError):
        host = settings.database_url.hosts()[0]
        print(
            f"patient-search: cannot reach PostgreSQL at {host['host']}:{host['port']}"
            " (is it running? `make services` starts the local one)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
