"""Read-after-write across two real server processes sharing one Redis and one database."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body
from tests.private_servers import free_port

WRITES = 25
READERS = 6


def start_server(
    database_url: str, redis_url: str, port: int, log: pathlib.Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PATIENT_SEARCH_DATABASE_URL": database_url,
        "PATIENT_SEARCH_REDIS_URL": redis_url,
        "PATIENT_SEARCH_JWT_SECRET": TEST_SECRET,
        "PATIENT_SEARCH_ENV": "dev",
        "PATIENT_SEARCH_DB_POOL_MIN": "2",
        # Six readers search as one user far faster than a front desk: no rate limit here.
        "PATIENT_SEARCH_SEARCH_RATE_PER_MINUTE": "0",
    }
    command = [sys.executable, "-m", "patient_search.cli", "serve", "--port", str(port)]
    # A file, not a pipe: a pipe nobody reads fills up and blocks the server's logging.
    with log.open("wb") as stderr:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def wait_ready(port: int, process: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(log.read_text()[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")


@pytest.fixture(scope="module")
def two_servers(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    ports = [free_port(), free_port()]
    logs = [tmp_path_factory.mktemp("server") / "stderr.log" for _ in ports]
    processes = [
        start_server(database_url, redis_url, port, log)
        for port, log in zip(ports, logs, strict=True)
    ]
    try:
        for port, process, log in zip(ports, processes, logs, strict=True):
            wait_ready(port, process, log)
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)


async def test_no_reader_in_another_process_sees_a_value_older_than_a_returned_write(
    two_servers: tuple[str, str],
) -> None:
    writer_url, reader_url = two_servers
    headers = bearer(new_clinic_id())
    async with httpx.AsyncClient(base_url=writer_url, timeout=10) as writer:
        created = await writer.post("/v1/patients", json=patient_body(), headers=headers)
        patient_id = created.json()["id"]
    # Writes: (returned at, version written, name, started at).
    # Reads: (started at, kind, version seen — or searched for, hits, ended at).
    writes: list[tuple[float, int, str, float]] = []
    reads: list[tuple[float, str, int, int, float]] = []
    done = asyncio.Event()

    async def write_loop() -> None:
        async with httpx.AsyncClient(base_url=writer_url, timeout=10) as writer:
            for i in range(WRITES):
                name = "Renamed" + "abcdefghijklmnopqrstuvwxyz"[i % 26] * (1 + i // 26)
                began = time.monotonic()
                response = await writer.patch(
                    f"/v1/patients/{patient_id}", json={"last_name": name}, headers=headers
                )
                assert response.status_code == 200, response.text
                writes.append((time.monotonic(), response.json()["version"], name, began))
                await asyncio.sleep(0.01)
        done.set()

    async def read_loop() -> None:
        async with httpx.AsyncClient(base_url=reader_url, timeout=10) as reader:
            while not done.is_set():
                for kind in ("profile", "summary", "search"):
                    started = time.monotonic()
                    if kind == "search":
                        latest = writes[-1] if writes else None
                        if latest is None:
                            continue
                        response = await reader.get(
                            "/v1/patients", params={"q": latest[2]}, headers=headers
                        )
                        assert response.status_code == 200, response.text
                        found = response.json()["total"]
                        reads.append((started, kind, latest[1], found, time.monotonic()))
                        continue
                    path = f"/v1/patients/{patient_id}"
                    response = await reader.get(
                        path + ("/summary" if kind == "summary" else ""), headers=headers
                    )
                    assert response.status_code == 200
                    version = response.json()["version"]
                    reads.append((started, kind, version, 1, time.monotonic()))

    await asyncio.gather(write_loop(), *(read_loop() for _ in range(READERS)))
    stale = []
    for started, kind, version, found, ended in reads:
        if kind == "search":
            # The name of a returned write must be found, unless a later write had begun
            # renaming the patient again before this search ended.
            renamed_again = any(w[1] > version and w[3] < ended for w in writes)
            if found != 1 and not renamed_again:
                stale.append((kind, version, found))
            continue
        returned_before = [w for w in writes if w[0] < started]
        if not returned_before:
            continue
        newest = max(w[1] for w in returned_before)
        if version < newest:
            stale.append((kind, version, newest))
    assert len(reads) > WRITES * 3
    assert stale == []
