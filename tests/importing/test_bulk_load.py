"""The initial bulk load: one transaction over an empty database, indexes built once."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest

from patient_search.cli import migrate
from patient_search.db.pool import build_pool
from patient_search.importing.rows import RawRecord
from patient_search.importing.service import import_records
from patient_search.seeding.generator import generate_patients
from tests.conftest import make_settings, recreate_database

INDEX_COUNT = "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"


@pytest.fixture
def empty_database() -> str:
    url = recreate_database("patient_search_bulk_test")
    migrate(make_settings(url))
    return url


def records(count: int, seed: int = 7) -> Iterator[RawRecord]:
    patients = generate_patients(count, seed=seed, mrn_prefix="BULK-")
    for line, patient in enumerate(patients, start=2):
        yield RawRecord(line, patient.as_import_row())


@pytest.fixture
def import_events() -> Iterator[list[str]]:
    """The events the importer logs (the service's loggers do not propagate to the root)."""
    events: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: events.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("patient_search.importing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield events
    logger.removeHandler(handler)


def index_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(INDEX_COUNT).fetchone()
        assert row is not None
        return int(row[0])


async def test_an_empty_database_loads_in_bulk_and_keeps_every_index(
    empty_database: str, import_events: list[str]
) -> None:
    before = index_count(empty_database)
    settings = make_settings(empty_database)
    async with build_pool(settings) as pool:
        report = await import_records(
            pool,
            "clinic-bulk",
            records(250),
            "US",
            batch_size=100,
            owner_conninfo=empty_database,
        )
    assert (report.inserted, report.rejected) == (250, 0)
    assert import_events == ["bulk_load_started"]
    assert index_count(empty_database) == before
    with psycopg.connect(empty_database) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM patient_name_terms),"
            " (SELECT count(*) FROM search_vocabulary_keys)"
        ).fetchone()
    assert counts is not None and counts[0] == 250 and counts[1] >= 500 and counts[2] > 0


async def test_a_failed_bulk_load_leaves_the_empty_database_as_it_was(
    empty_database: str,
) -> None:
    before = index_count(empty_database)

    def breaking() -> Iterator[RawRecord]:
        yield from records(150)
        raise RuntimeError("the file went away")

    async with build_pool(make_settings(empty_database)) as pool:
        with pytest.raises(RuntimeError):
            await import_records(
                pool,
                "clinic-bulk",
                breaking(),
                "US",
                batch_size=100,
                owner_conninfo=empty_database,
            )
    assert index_count(empty_database) == before
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone() == (0,)


async def test_a_database_with_patients_loads_batch_by_batch(
    empty_database: str, import_events: list[str]
) -> None:
    settings = make_settings(empty_database)
    async with build_pool(settings) as pool:
        await import_records(pool, "clinic-a", records(10, seed=1), "US", batch_size=5)
        # Other clinics' data exists: their indexes must not go, nor the tables be locked.
        report = await import_records(
            pool,
            "clinic-b",
            records(20, seed=2),
            "US",
            batch_size=5,
            owner_conninfo=empty_database,
        )
    assert report.inserted == 20
    assert import_events == []
    # Statistics kept up as it loaded (after batches 1, 2 and 4): the planner knows all 30.
    with psycopg.connect(empty_database) as conn:
        estimate = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'patients'::regclass"
        ).fetchone()
    assert estimate == (30,)


async def test_a_role_that_does_not_own_the_tables_loads_batch_by_batch(
    empty_database: str, import_events: list[str]
) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS bulk_test_guest")
        conn.execute("CREATE ROLE bulk_test_guest LOGIN")
        conn.execute("GRANT patient_search_app TO bulk_test_guest")
    guest = empty_database.replace("postgres@", "bulk_test_guest@")
    async with build_pool(make_settings(empty_database)) as pool:
        report = await import_records(
            pool, "clinic-c", records(10, seed=3), "US", batch_size=5, owner_conninfo=guest
        )
    assert report.inserted == 10
    assert import_events == []
