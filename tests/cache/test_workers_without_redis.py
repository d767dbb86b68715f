"""Several workers and no Redis: no worker serves what another has archived or changed."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.cache.test_two_processes import wait_ready
from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.private_servers import free_port

WORKERS = 3
READS = 60


@pytest.fixture(scope="module")
def workers_without_redis(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, pathlib.Path]]:
    port = free_port()
    log = tmp_path_factory.mktemp("workers") / "stderr.log"
    env = {
        **os.environ,
        "PATIENT_SEARCH_DATABASE_URL": database_url,
        "PATIENT_SEARCH_REDIS_URL": "",
        "PATIENT_SEARCH_JWT_SECRET": TEST_SECRET,
        "PATIENT_SEARCH_ENV": "dev",
        "PATIENT_SEARCH_DB_POOL_MIN": "1",
    }
    command = [sys.executable, "-m", "patient_search.cli", "serve", "--port", str(port)]
    command += ["--workers", str(WORKERS)]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_ready(port, process, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        process.wait(timeout=15)


def _fresh_get(url: str, headers: dict[str, str]) -> int:
    # A new connection each time, so the kernel spreads the reads over the workers.
    with httpx.Client(headers=headers) as client:
        return client.get(url).status_code


def test_an_archived_patient_is_gone_from_every_worker(
    workers_without_redis: tuple[str, pathlib.Path],
) -> None:
    base, log = workers_without_redis
    clinic = new_clinic_id()
    headers = bearer(clinic)
    created = httpx.post(f"{base}/v1/patients", json=patient_body(), headers=headers)
    assert created.status_code == 201, created.text
    url = f"{base}/v1/patients/{created.json()['id']}"
    # Read it through every worker, so an in-process cache in each would hold it.
    assert {_fresh_get(url, headers) for _ in range(READS)} == {200}
    archived = httpx.delete(url, headers=headers)
    assert archived.status_code == 204
    assert {_fresh_get(url, headers) for _ in range(READS)} == {404}
    assert "the cache is off" in log.read_text()
