"""SIGTERM: `patient-search serve` finishes in-flight requests, closes its pool, exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.faults.conftest import PrivatePostgres, report
from tests.private_servers import free_port

STARTUP_S = 30


@pytest.fixture
def server(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATIENT_SEARCH_")}
    env.update(
        PATIENT_SEARCH_DATABASE_URL=private_postgres.url(),
        PATIENT_SEARCH_REDIS_URL="",
        PATIENT_SEARCH_ENV="dev",
        PATIENT_SEARCH_JWT_SECRET=TEST_SECRET,
        # The in-flight request below waits on a row lock; give it room on a busy machine.
        PATIENT_SEARCH_DB_STATEMENT_TIMEOUT_MS="20000",
        PATIENT_SEARCH_DB_POOL_MIN="2",
    )
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "patient_search.cli", "serve", "--port", str(port)],
        cwd=tmp_path,  # no .env there
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start: {(tmp_path / 'server.log').read_text()}")
        time.sleep(0.1)
    try:
        yield base, process, log_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def _service_sessions(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'patient-search'"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


async def test_sigterm_drains_in_flight_requests_and_closes_the_pool(
    server: tuple[str, subprocess.Popen[bytes], Path], private_postgres: PrivatePostgres
) -> None:
    base, process, log_path = server
    headers = bearer(clinic := new_clinic_id(), user="drain-tester")
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        created = await client.post("/v1/patients", json=patient_body(), headers=headers)
        assert created.status_code == 201, created.text
        patient_id = uuid.UUID(created.json()["id"])
        path = f"/v1/patients/{patient_id}"

        with psycopg.connect(private_postgres.url(), autocommit=True) as admin:
            assert _service_sessions(admin) >= 1
            with admin.transaction(force_rollback=True):
                # A lock held elsewhere keeps the PATCH in flight for as long as we like.
                admin.execute(
                    "SELECT 1 FROM patients WHERE clinic_id = %s AND id = %s FOR UPDATE",
                    [clinic, patient_id],
                )
                in_flight = asyncio.create_task(
                    client.patch(
                        path,
                        json={"status": "inactive"},
                        headers={**headers, "X-Request-ID": "drain-patch"},
                    )
                )
                await _until_waiting_on_a_lock(admin)
                viewed = await client.get(path, headers={**headers, "X-Request-ID": "drain-view"})
                assert viewed.status_code == 200
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                assert process.poll() is None, "exited with a request in flight"
                assert not in_flight.done()
            # The lock is gone (rolled back): the PATCH completes during the drain.
            response = await in_flight
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "inactive"

        exit_code = await asyncio.to_thread(process.wait, 20)
        drained_s = time.monotonic() - signalled
        assert exit_code == 0
    # The lifespan's shutdown ran to its end: the audit trail flushed, the pool closed.
    assert "Application shutdown complete" in log_path.read_text()

    with psycopg.connect(private_postgres.url(), autocommit=True) as admin:
        deadline = time.monotonic() + 5
        while _service_sessions(admin) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _service_sessions(admin) == 0
        entries = admin.execute(
            "SELECT action, actor, request_id FROM access_audit"
            " WHERE clinic_id = %s AND patient_id = %s ORDER BY id",
            [clinic, patient_id],
        ).fetchall()
    assert [(a, r) for a, _, r in entries][1:] == [
        ("view", "drain-view"),
        ("update", "drain-patch"),
    ]
    assert {actor for _, actor, _ in entries} == {"drain-tester"}
    report(
        f"graceful shutdown: SIGTERM with 1 request in flight; it completed (200), the process "
        f"exited 0 {drained_s:.2f} s after the signal, 0 pool sessions left, its view and "
        "write both audited"
    )


async def _until_waiting_on_a_lock(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'patient-search' AND wait_event_type = 'Lock'"
        ).fetchone()
        if row and row[0]:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the PATCH never waited on the lock")
