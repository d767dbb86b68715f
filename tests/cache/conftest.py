"""Redis for the cache tests: the shared test server (a private one is in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from patient_search.settings import Settings


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (make test starts the managed one); every test keys by its own clinic."""
    url = os.environ.get("PATIENT_SEARCH_REDIS_URL") or Settings().redis_url
    if not url:
        pytest.fail("no Redis configured: run through `make test`")
    return url
