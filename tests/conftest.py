"""Shared fixtures: a freshly migrated test database, the app, and per-test clinics.

Tests isolate by tenancy: every test works in clinics of its own (random ids), which
row-level security keeps apart, so no test has to count around another's rows.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import sql

from patient_search.app import create_app
from patient_search.cli import migrate
from patient_search.db.logins import grant_service_login, with_login
from patient_search.settings import Settings
from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.private_servers import PrivateRedis, free_port

# PS_TEST_DATABASE lets two suites run side by side on one server without dropping each other.
TEST_DATABASE = os.environ.get("PS_TEST_DATABASE", "patient_search_test")


def _server_url() -> str:
    # make test exports the managed (or configured) server; .env is the fallback.
    configured = os.environ.get("PATIENT_SEARCH_DATABASE_URL")
    return configured or str(Settings().database_url)


def database_url_for(name: str) -> str:
    """The URL of database `name` on the test server."""
    return urlsplit(_server_url())._replace(path=f"/{name}").geturl()


def recreate_database(name: str) -> str:
    """Drop and create database `name`; its URL."""
    admin = database_url_for("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url_for(name)


# The suite's service login: an ordinary role, only a member of patient_search_app, as in
# production. The owner (the server's superuser) migrates and checks from the side.
SERVICE_LOGIN = "patient_search_test_service"


def service_url(owner_url: str) -> str:
    """The same database, logged in as the suite's service login."""
    return with_login(owner_url, SERVICE_LOGIN)


@pytest.fixture(scope="session")
def database_url() -> str:
    """A migrated, otherwise empty database for the whole session (the owner's URL)."""
    url = recreate_database(TEST_DATABASE)
    migrate(make_settings(url))
    grant_service_login(url, service_url(url), create=True)
    return url


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that calls `app` in-process (no socket)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for tests: dev mode, a fixed secret, no Redis unless asked."""
    values: dict[str, object] = {
        "database_url": database_url,
        "env": "dev",
        "jwt_secret": TEST_SECRET,
        "redis_url": "",
        "db_pool_min": 1,
        "db_pool_max": 10,
        # One test user sends hundreds of searches (fuzzing); tests/test_rate_limit.py opts in.
        "search_rate_per_minute": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """The service's settings: logged in as the unprivileged service login."""
    return make_settings(service_url(database_url), migration_database_url=database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http


@pytest.fixture
def clinic() -> str:
    return new_clinic_id()


@pytest.fixture
def auth(clinic: str) -> dict[str, str]:
    return bearer(clinic)


@pytest.fixture
def create_patient(client: httpx.AsyncClient) -> Callable[..., object]:
    async def create(headers: dict[str, str], **overrides: object) -> dict[str, object]:
        response = await client.post(
            "/v1/patients", json=patient_body(**overrides), headers=headers
        )
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        return created

    return create


@pytest.fixture
def superuser_conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, on a free port; stopped (and thawed) afterwards."""
    server = PrivateRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.thaw()
        server.stop()


@pytest.fixture
async def tiny_pool_app(database_url: str) -> AsyncIterator[FastAPI]:
    """An app whose pool has one connection and gives up waiting for it after 0.3 s."""
    app = create_app(
        make_settings(database_url, db_pool_min=1, db_pool_max=1, db_pool_acquire_timeout_s=0.3)
    )
    async with app.router.lifespan_context(app):
        yield app
