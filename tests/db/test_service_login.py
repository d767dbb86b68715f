"""The service logs in as an ordinary role: RESET ROLE leaves it bound by row-level security."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from psycopg_pool import PoolTimeout

from patient_search import cli
from patient_search.db.logins import with_login
from patient_search.db.pool import build_pool
from patient_search.settings import Settings, SettingsError
from tests.conftest import SERVICE_LOGIN, make_settings, service_url
from tests.factories import TEST_SECRET


async def test_an_injected_reset_role_still_sees_no_clinic(
    app: FastAPI, create_patient: Any, auth: dict[str, str]
) -> None:
    await create_patient(auth)  # the clinic has a patient
    async with app.state.services.pool.connection() as conn:
        login = await (await conn.execute("SELECT session_user AS login")).fetchone()
        assert login == {"login": SERVICE_LOGIN}
        # What an injected statement could try: leave the RLS role, then read everything.
        await conn.execute("RESET ROLE")
        try:
            visible = await (await conn.execute("SELECT count(*) AS n FROM patients")).fetchone()
            assert visible == {"n": 0}
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        finally:
            await conn.execute("ROLLBACK")
            await conn.execute("SET ROLE patient_search_app")


def _production(database_url: str) -> Settings:
    return make_settings(database_url, env="production", jwt_secret=TEST_SECRET * 2)


def test_serve_refuses_a_superuser_login_outside_dev(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve started as a superuser")

    monkeypatch.setattr(uvicorn, "run", never)
    with pytest.raises(SettingsError, match="a superuser"):
        cli.serve(_production(database_url), "127.0.0.1", 0, 1)


def test_the_service_login_may_serve(database_url: str) -> None:
    cli._refuse_privileged_login(_production(service_url(database_url)))  # no error


def test_migrate_logs_in_as_the_migration_login(database_url: str) -> None:
    settings = make_settings(service_url(database_url), migration_database_url=database_url)
    before, after = cli.migrate(settings)
    assert before == after  # the owner read the schema's revision; the service login cannot
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with psycopg.connect(service_url(database_url)) as conn:
            conn.execute("SELECT version_num FROM alembic_version")


def test_service_login_prints_the_environment_make_demo_serves_with(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "get_settings", lambda: make_settings(database_url))
    assert cli.main(["service-login", "--role", SERVICE_LOGIN]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["PATIENT_SEARCH_MIGRATION_DATABASE_URL"] == database_url
    assert lines["PATIENT_SEARCH_DATABASE_URL"] == service_url(database_url)
    cli._refuse_privileged_login(_production(lines["PATIENT_SEARCH_DATABASE_URL"]))


@pytest.mark.parametrize(
    ("attributes", "grant_owner", "reason"),
    [
        ("CREATEROLE", False, "a CREATEROLE role"),
        ("", True, "a member of a superuser"),
    ],
)
def test_a_login_that_can_become_privileged_is_refused(
    database_url: str,
    superuser_conn: psycopg.Connection[Any],
    attributes: str,
    grant_owner: bool,
    reason: str,
) -> None:
    login = f"ps_test_privileged_{'owner' if grant_owner else 'creator'}"
    superuser_conn.execute(f"DROP ROLE IF EXISTS {login}")
    superuser_conn.execute(f"CREATE ROLE {login} LOGIN {attributes}")
    try:
        if grant_owner:  # the tables' owner here is the server's superuser
            owner = superuser_conn.execute("SELECT current_user").fetchone()
            assert owner is not None
            superuser_conn.execute(f'GRANT "{owner[0]}" TO {login}')
        with pytest.raises(SettingsError, match=reason):
            cli._refuse_privileged_login(_production(with_login(database_url, login)))
    finally:
        superuser_conn.execute(f"DROP ROLE {login}")


async def test_the_server_pool_never_holds_a_privileged_connection(database_url: str) -> None:
    # As when the database was down while serve checked: the pool itself refuses.
    settings = make_settings(
        database_url, env="production", jwt_secret=TEST_SECRET * 2, db_pool_acquire_timeout_s=1
    )
    pool = build_pool(settings, refuse_privileged=True)
    await pool.open()
    try:
        with pytest.raises(PoolTimeout):
            async with pool.connection():
                pass
    finally:
        await pool.close()
    served = build_pool(make_settings(service_url(database_url)), refuse_privileged=True)
    await served.open()
    try:
        async with served.connection() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).fetchone() == {"one": 1}
    finally:
        await served.close()
