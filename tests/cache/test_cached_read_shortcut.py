"""The cached-read shortcut (decision 0016): it answers hits, and only hits, as the routes would."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from patient_search.patients.shortcut import CachedReadShortcut
from tests.audit.trail_rows import entries
from tests.factories import bearer, new_clinic_id, patient_body
from tests.observability.helpers import sample

REQUESTS = "patient_search_http_request_duration_seconds"


class Downstream:
    """Stands for the routes: records that a request was passed on."""

    def __init__(self) -> None:
        self.passed: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.passed.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(
    shortcut: CachedReadShortcut,
    app: FastAPI,
    path: str,
    headers: dict[str, str],
    method: str = "GET",
    query: bytes = b"",
) -> int:
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "app": app,
        "state": {},
    }
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await shortcut(scope, receive, send)
    return statuses[0]


async def test_only_a_hit_is_answered_and_everything_else_is_passed_on(
    redis_app: FastAPI, http: httpx.AsyncClient
) -> None:
    clinic = new_clinic_id()
    headers = bearer(clinic)
    created = await http.post("/v1/patients", json=patient_body(), headers=headers)
    patient_id = created.json()["id"]  # the write stored the profile and the summary
    archived = (await http.post("/v1/patients", json=patient_body(), headers=headers)).json()["id"]
    assert (await http.delete(f"/v1/patients/{archived}", headers=headers)).status_code == 204
    downstream = Downstream()
    shortcut = CachedReadShortcut(downstream)
    profile = f"/v1/patients/{patient_id}"

    assert await call(shortcut, redis_app, profile, headers) == 200
    assert await call(shortcut, redis_app, f"{profile}/summary", headers) == 200
    assert downstream.passed == []

    passed_on = [
        (profile, {}, "GET", b""),  # no token
        (profile, {"Authorization": "Bearer not-a-token"}, "GET", b""),
        (profile, bearer(clinic, scopes="patients:write"), "GET", b""),  # no read scope
        (profile, bearer(new_clinic_id()), "GET", b""),  # another clinic: its key is empty
        (f"/v1/patients/{uuid.uuid4()}", headers, "GET", b""),  # a miss
        (f"/v1/patients/{archived}", headers, "GET", b""),  # a tombstone
        (profile.upper().replace("/V1/PATIENTS", "/v1/patients"), headers, "GET", b""),
        (profile, headers, "GET", b"x=1"),
        (profile, headers, "HEAD", b""),
        (f"{profile}/history", headers, "GET", b""),
    ]
    for path, request_headers, method, query in passed_on:
        assert await call(shortcut, redis_app, path, request_headers, method, query) == 299
    assert len(downstream.passed) == len(passed_on)


async def test_a_hit_it_answers_is_audited_timed_and_labelled_by_its_route(
    http: httpx.AsyncClient, database_url: str
) -> None:
    clinic = new_clinic_id()
    headers = bearer(clinic, user="desk-7")
    created = await http.post("/v1/patients", json=patient_body(), headers=headers)
    patient_id = created.json()["id"]
    labels = {"method": "GET", "route": "/v1/patients/{patient_id}/summary", "status": "200"}
    before = sample(f"{REQUESTS}_count", **labels)
    response = await http.get(f"/v1/patients/{patient_id}/summary", headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    assert response.headers["server-timing"].startswith("app;dur=")
    assert sample(f"{REQUESTS}_count", **labels) == before + 1
    # The view is committed before the response, or journaled with the hit and drained soon.
    deadline = time.monotonic() + 10
    with psycopg.connect(database_url) as conn:
        while True:
            views = [row for row in entries(conn, clinic, patient_id) if row[0] == "summary"]
            if views or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
    assert views == [("summary", "desk-7", response.headers["x-request-id"])]
