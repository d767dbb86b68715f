"""Migrations apply to an empty database, reverse cleanly and apply again."""

from __future__ import annotations

import psycopg
from alembic import command
from alembic.config import Config

from patient_search.cli import REPO_ROOT, migrate
from tests.conftest import make_settings, recreate_database


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def test_up_down_up() -> None:
    url = recreate_database("patient_search_migrations_test")
    settings = make_settings(url)
    migrate(settings)
    migrate(settings)  # idempotent
    assert {
        "clinics",
        "patients",
        "patient_phones",
        "emergency_contacts",
        "insurance_policies",
    } <= _tables(url)
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.downgrade(config, "base")
    assert _tables(url) <= {"alembic_version"}
    migrate(settings)
    assert "patients" in _tables(url)
