"""Caching seen through the API, with Redis: what reaches the database, and what never may."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import redis.asyncio as redis
from fastapi import FastAPI

from patient_search.cache.keys import PREFIX
from patient_search.patients.schemas import Patient
from tests.factories import bearer, new_clinic_id, patient_body
from tests.instruments import CountingObserver


@pytest.fixture
def statements(redis_app: FastAPI) -> Counter[str]:
    observer: CountingObserver = redis_app.state.services.query_observer
    observer.counts.clear()
    return observer.counts


KINDS = ("profile", "summary")


async def create(http: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> str:
    response = await http.post("/v1/patients", json=patient_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    patient_id: str = response.json()["id"]
    return patient_id


async def test_a_profile_read_twice_reaches_the_database_once(
    http: httpx.AsyncClient, statements: Counter[str]
) -> None:
    headers = bearer(new_clinic_id())
    patient_id = await create(http, headers)
    statements.clear()
    key = f"/v1/patients/{patient_id}"
    first, second = await http.get(key, headers=headers), await http.get(key, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    # The write stored the profile: neither read needed the database.
    assert statements["patient.get"] == 0


async def test_a_hit_sends_the_bytes_and_headers_the_database_read_sent(
    http: httpx.AsyncClient, redis_url: str, statements: Counter[str]
) -> None:
    """Hits are sent as stored (decision 0015): the stored body must be the response itself."""
    clinic = new_clinic_id()
    headers = bearer(clinic)
    created = await http.post("/v1/patients", json=patient_body(), headers=headers)
    patient_id = created.json()["id"]
    client = redis.Redis.from_url(redis_url)
    for path in (f"/v1/patients/{patient_id}", f"/v1/patients/{patient_id}/summary"):
        await client.delete(*[f"{PREFIX}{{{clinic}}}:{kind}:{patient_id}" for kind in KINDS])
        statements.clear()
        miss, hit = await http.get(path, headers=headers), await http.get(path, headers=headers)
        assert statements["patient.get"] == 1  # the first read was the database's
        assert miss.status_code == hit.status_code == 200
        assert miss.content == hit.content
        for name in ("content-type", "etag", "cache-control"):
            assert miss.headers[name] == hit.headers[name], name
        assert hit.headers["content-type"] == "application/json"
        assert hit.headers["etag"] == '"1"'
    profile = await http.get(f"/v1/patients/{patient_id}", headers=headers)
    assert Patient.model_validate_json(profile.content).model_dump(mode="json") == created.json()
    await client.aclose()


async def test_a_read_after_a_write_sees_the_write(
    http: httpx.AsyncClient, statements: Counter[str]
) -> None:
    headers = bearer(new_clinic_id())
    patient_id = await create(http, headers, last_name="Before")
    assert (await http.get(f"/v1/patients/{patient_id}", headers=headers)).json()["version"] == 1
    patch = await http.patch(
        f"/v1/patients/{patient_id}", json={"last_name": "After"}, headers=headers
    )
    assert patch.status_code == 200
    profile = (await http.get(f"/v1/patients/{patient_id}", headers=headers)).json()
    summary = (await http.get(f"/v1/patients/{patient_id}/summary", headers=headers)).json()
    assert (profile["last_name"], profile["version"]) == ("After", 2)
    assert (summary["last_name"], summary["version"]) == ("After", 2)


async def test_an_archived_patient_is_gone_from_every_cache(http: httpx.AsyncClient) -> None:
    headers = bearer(new_clinic_id())
    patient_id = await create(http, headers, last_name="Archivable")
    search = await http.get("/v1/patients", params={"q": "archivable"}, headers=headers)
    assert search.json()["total"] == 1
    assert (await http.delete(f"/v1/patients/{patient_id}", headers=headers)).status_code == 204
    for path in (f"/v1/patients/{patient_id}", f"/v1/patients/{patient_id}/summary"):
        assert (await http.get(path, headers=headers)).status_code == 404
    search = await http.get("/v1/patients", params={"q": "archivable"}, headers=headers)
    assert search.json()["total"] == 0


async def test_summary_is_written_through(
    http: httpx.AsyncClient, statements: Counter[str]
) -> None:
    headers = bearer(new_clinic_id())
    patient_id = await create(http, headers, first_name="Grace", last_name="Hopper")
    statements.clear()
    response = await http.get(f"/v1/patients/{patient_id}/summary", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["first_name"], body["last_name"], body["version"]) == ("Grace", "Hopper", 1)
    assert "emergency_contacts" not in body
    assert sum(statements.values()) == 0


async def test_a_repeated_search_is_served_from_the_cache_until_a_write(
    http: httpx.AsyncClient, statements: Counter[str]
) -> None:
    headers = bearer(new_clinic_id())
    await create(http, headers, first_name="Ada", last_name="Quimby")
    statements.clear()
    params = {"q": "quimby"}
    first = await http.get("/v1/patients", params=params, headers=headers)
    searched = sum(statements.values())
    second = await http.get("/v1/patients", params=params, headers=headers)
    assert first.json() == second.json() and first.json()["total"] == 1
    assert searched > 0 and sum(statements.values()) == searched  # the second ran no SQL
    await create(http, headers, first_name="Bea", last_name="Quimby")
    third = await http.get("/v1/patients", params=params, headers=headers)
    assert third.json()["total"] == 2


async def test_another_clinic_never_gets_a_cached_patient_or_search(
    http: httpx.AsyncClient,
) -> None:
    clinic_a, clinic_b = bearer(new_clinic_id()), bearer(new_clinic_id())
    patient_id = await create(http, clinic_a, last_name="Zanzibar")
    assert (await http.get(f"/v1/patients/{patient_id}", headers=clinic_a)).status_code == 200
    a_search = await http.get("/v1/patients", params={"q": "zanzibar"}, headers=clinic_a)
    assert a_search.json()["total"] == 1
    for path in (f"/v1/patients/{patient_id}", f"/v1/patients/{patient_id}/summary"):
        response = await http.get(path, headers=clinic_b)
        assert response.status_code == 404
        assert "Zanzibar" not in response.text
    b_search = await http.get("/v1/patients", params={"q": "zanzibar"}, headers=clinic_b)
    assert b_search.json() == {"items": [], "total": 0, "total_exact": True, "next_cursor": None}


async def test_readyz_names_the_redis_cache(http: httpx.AsyncClient) -> None:
    response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["cache"] == "redis"


def cache_count(metrics: str, cache: str, result: str) -> float:
    prefix = f'patient_search_cache_requests_total{{cache="{cache}",result="{result}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no series for {cache}/{result}")


async def test_hits_and_misses_are_counted_in_the_metrics(http: httpx.AsyncClient) -> None:
    headers = bearer(new_clinic_id())
    patient_id = await create(http, headers)
    before = (await http.get("/metrics")).text
    await http.get(f"/v1/patients/{patient_id}", headers=headers)  # written through: a hit
    await http.get("/v1/patients", params={"q": "lovelace"}, headers=headers)  # a miss
    after = (await http.get("/metrics")).text
    assert cache_count(after, "profile", "hit") == cache_count(before, "profile", "hit") + 1
    assert cache_count(after, "search", "miss") == cache_count(before, "search", "miss") + 1
