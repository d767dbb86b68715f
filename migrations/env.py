"""Alembic environment: migrations are plain SQL, run with the configured database URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from patient_search.settings import get_settings


def _sqlalchemy_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or str(get_settings().database_url)
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def run_migrations_online() -> None:
    engine = create_engine(_sqlalchemy_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL-script) migrations are not supported; run `patient-search migrate`"
    )
run_migrations_online()
