"""Redis for the cache tests: the shared test server (a private one is in tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from patient_search.cache.backends import RedisBackend
from patient_search.cache.keys import PREFIX
from patient_search.settings import Settings
from tests.conftest import asgi_client, make_settings
from tests.instruments import CountingObserver


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (make test starts the managed one); every test keys by its own clinic."""
    url = os.environ.get("PATIENT_SEARCH_REDIS_URL") or Settings().redis_url
    if not url:
        pytest.fail("no Redis configured: run through `make test`")
    return url


@pytest.fixture
async def redis_backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    """The cache's Redis backend on the test Redis, with a patient timeout."""
    backend = RedisBackend(redis_url, timeout_s=2.0, key_prefix=PREFIX)
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def redis_app(database_url: str, redis_url: str) -> AsyncIterator[FastAPI]:
    """The service on the test Redis; its statements are counted (`statements` in the tests).

    A generous Redis timeout: tests count statements, and a loaded CI machine must not turn a
    slow Redis reply into a (correct, but uncounted-for) database read."""
    app = create_app(make_settings(database_url, redis_url=redis_url, redis_timeout_ms=2000))
    async with app.router.lifespan_context(app):
        state = app.state.services
        state.query_observer = CountingObserver(state.query_observer)
        yield app


@pytest.fixture
async def http(redis_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(redis_app) as client:
        yield client
