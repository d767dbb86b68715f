"""JSON request logs, request ids, slow-query events — and no patient data in any of them."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id, patient_body
from tests.observability.helpers import capture_logs


@pytest.fixture
async def slow_app(database_url: str) -> AsyncIterator[FastAPI]:
    """Every statement counts as slow: the slow-query log sees all of them."""
    app = create_app(make_settings(database_url, slow_query_ms=0))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def slow_client(slow_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(slow_app) as client:
        yield client


async def test_one_json_line_per_request_with_template_and_ids(
    client: httpx.AsyncClient,
) -> None:
    patient_id = str(uuid.uuid4())
    with capture_logs() as logs:
        response = await client.get(
            f"/v1/patients/{patient_id}?q=should-not-appear",
            headers=bearer(new_clinic_id(), user="nurse-7"),
        )
    requests = [json.loads(line) for line in logs.lines if '"event":"request"' in line]
    assert len(requests) == 1
    event = requests[0]
    assert event["route"] == "/v1/patients/{patient_id}"
    assert event["method"] == "GET"
    assert event["status"] == response.status_code == 404
    assert event["duration_ms"] > 0
    assert event["request_id"] == response.headers["x-request-id"]
    assert event["user_id"] == "nurse-7"
    assert patient_id not in logs.lines[-1]
    assert "should-not-appear" not in "".join(logs.lines)


async def test_a_valid_incoming_request_id_is_kept_and_returned(
    client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42:x"})
    assert response.headers["x-request-id"] == "lb-7f3a.42:x"
    assert logs.events("request")[0].request_id == "lb-7f3a.42:x"


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "semi;colon", "<script>"])
async def test_an_invalid_request_id_is_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{24}", response.headers["x-request-id"])


async def test_every_response_has_a_fresh_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/nope")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_slow_query_event_names_the_query_and_the_request(
    slow_client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await slow_client.get(
            f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id())
        )
    slow = logs.events("slow_query")
    assert slow, "every statement is slow at SLOW_QUERY_MS=0"
    event = next(record for record in slow if record.query == "patient.get")
    assert event.request_id == response.headers["x-request-id"]
    assert event.rows == 0
    assert event.duration_ms >= 0
    line = json.loads(next(line for line in logs.lines if '"query":"patient.get"' in line))
    assert set(line) == {
        "ts", "level", "logger", "event", "query", "duration_ms", "rows", "request_id",
    }  # fmt: skip


PEOPLE = [
    {
        "mrn": "MRN-QX-80412",
        "first_name": "Zebulon",
        "last_name": "Quixotewright",
        "date_of_birth": "1961-07-23",
        "phones": ["(212) 555-0187"],
        "email": "zeb.quixotewright@mailbox.example",
    },
    {
        "mrn": "MRN-QX-80413",
        "first_name": "Philippa",
        "last_name": "Marchbanks-Oyelaran",
        "date_of_birth": "1994-02-11",
        "phones": ["+1 646 555 0143"],
        "email": "pmo1994@inbox.example",
    },
]


def _phi_strings() -> list[str]:
    strings = []
    for person in PEOPLE:
        strings += [
            str(person["mrn"]),
            str(person["first_name"]),
            str(person["last_name"]),
            str(person["date_of_birth"]),
            str(person["email"]),
            str(person["email"]).split("@")[0],
        ]
        for phone in person["phones"]:  # type: ignore[attr-defined]
            digits = re.sub(r"\D", "", phone)
            strings += [phone, digits, digits[-10:], digits[-7:], f"{digits[-7:-4]}-{digits[-4:]}"]
    return strings


async def test_no_patient_data_reaches_logs_or_metrics(slow_client: httpx.AsyncClient) -> None:
    headers = bearer(new_clinic_id())
    with capture_logs() as logs:
        ids = []
        for person in PEOPLE:
            created = await slow_client.post(
                "/v1/patients", json=patient_body(**person), headers=headers
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        for person in PEOPLE:
            phone = person["phones"][0]  # type: ignore[index]
            queries = [
                {"q": f"{person['first_name']} {person['last_name']}"},
                {"q": f"{person['last_name']}, {person['first_name']}"},
                {"q": str(person["last_name"])[:5]},
                {"q": phone},
                {"phone": phone},
                {"q": person["email"]},
                {"email": person["email"]},
                {"q": person["mrn"]},
                {"q": f"{person['last_name']} {person['date_of_birth']}"},
            ]
            for params in queries:
                found = await slow_client.get("/v1/patients", params=params, headers=headers)
                assert found.status_code == 200, (params, found.text)
                assert found.json()["items"], params  # the searches really ran and matched
        for patient_id in ids:
            assert (await slow_client.get(f"/v1/patients/{patient_id}", headers=headers)).is_success
        # A validation error quotes nothing the client sent either.
        await slow_client.get("/v1/patients", params={"date_of_birth": "Zebulon"}, headers=headers)
        metrics_text = (await slow_client.get("/metrics")).text
    assert logs.events("slow_query") and logs.events("request")
    captured = "\n".join(logs.lines)
    for phi in _phi_strings():
        assert phi.lower() not in captured.lower(), f"{phi!r} leaked into the logs"
        # A bare 7-digit run can occur by chance among the many float digits of a scrape.
        if not phi.isdigit() or len(phi) > 7:
            assert phi.lower() not in metrics_text.lower(), f"{phi!r} leaked into /metrics"
