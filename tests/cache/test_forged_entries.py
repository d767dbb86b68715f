"""Entries written into Redis by someone other than the service are never served.

Each test plays someone who can reach Redis but does not hold the service secret: they
write values in the stored format (decision 0015) straight under the service's keys, or
copy a genuine value to another key. The API must answer from the database instead.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as redis

from patient_search.cache.keys import PREFIX
from patient_search.cache.policies import PROFILE, SUMMARY, Form
from tests.factories import bearer, new_clinic_id, patient_body
from tests.observability.helpers import scraped

REJECTED = "patient_search_cache_rejected_total"


@pytest.fixture
async def attacker(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A plain redis-py client on the service's Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def create(http: httpx.AsyncClient, headers: dict[str, str], **fields: object) -> str:
    response = await http.post("/v1/patients", json=patient_body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    patient_id: str = response.json()["id"]
    return patient_id


def forged(form: Form[Any], clinic: str, version: int, body: dict[str, object]) -> bytes:
    """A value in the stored format, header and body, as anyone can write it."""
    header = {"clinic": clinic, "at": time.time(), "gen": "", "shape": form.shape}
    return b"%d|" % version + orjson.dumps(header) + b"\n" + orjson.dumps(body)


async def search_key(attacker: redis.Redis, clinic: str) -> bytes:
    """The one cached search page of `clinic` (found by listing keys, as anyone can)."""
    found = [
        key
        async for key in attacker.scan_iter(match=f"{PREFIX}{{{clinic}}}:search:*")
        if not key.endswith(b"-lock")
    ]
    assert len(found) == 1
    return found[0]


async def rejected(http: httpx.AsyncClient, cache: str) -> float:
    """The cache's count of rejected values, as /metrics shows it."""
    value = scraped((await http.get("/metrics")).text, REJECTED, cache=cache)
    assert value is not None
    return value


def rehomed(stored: bytes, from_clinic: str, to_clinic: str) -> bytes:
    """A genuine value with the clinic in its header rewritten."""
    head, newline, body = stored.partition(b"\n")
    return head.replace(from_clinic.encode(), to_clinic.encode()) + newline + body


@pytest.mark.parametrize(("kind", "form"), [("profile", PROFILE), ("summary", SUMMARY)])
async def test_a_forged_profile_or_summary_is_not_served(
    http: httpx.AsyncClient, attacker: redis.Redis, kind: str, form: Form[Any]
) -> None:
    clinic = new_clinic_id()
    headers = bearer(clinic)
    patient_id = await create(http, headers, last_name="Genuine")
    path = f"/v1/patients/{patient_id}" + ("/summary" if kind == "summary" else "")
    real = (await http.get(path, headers=headers)).json()
    fake = {**real, "last_name": "Forged", "version": 99}
    await attacker.set(f"{PREFIX}{{{clinic}}}:{kind}:{patient_id}", forged(form, clinic, 99, fake))
    before = await rejected(http, kind)

    response = await http.get(path, headers=headers)
    assert response.status_code == 200
    assert response.json() == real  # the database's answer
    assert response.headers["etag"] == '"1"'
    assert await rejected(http, kind) > before


async def test_a_forged_search_page_is_not_served(
    http: httpx.AsyncClient, attacker: redis.Redis
) -> None:
    clinic = new_clinic_id()
    headers = bearer(clinic)
    await create(http, headers, last_name="Quaxley")
    real = (await http.get("/v1/patients", params={"q": "quaxley"}, headers=headers)).json()
    assert real["total"] == 1
    # The search key is an HMAC of the request, but the page is there to be found.
    key = await search_key(attacker, clinic)
    stored = await attacker.get(key)
    head, _, _ = stored.partition(b"\n")
    fake = {**real, "items": [], "total": 424242}
    await attacker.set(key, head + b"\n" + orjson.dumps(fake))
    before = await rejected(http, "search")

    again = await http.get("/v1/patients", params={"q": "quaxley"}, headers=headers)
    assert again.status_code == 200
    assert again.json() == real
    assert await rejected(http, "search") == before + 1


@pytest.mark.parametrize("rewrite_header", [False, True], ids=["as-is", "header-rewritten"])
@pytest.mark.parametrize("kind", ["profile", "summary"])
async def test_another_clinics_entry_copied_under_this_clinics_key_is_a_miss(
    http: httpx.AsyncClient, attacker: redis.Redis, kind: str, rewrite_header: bool
) -> None:
    clinic_a, clinic_b = new_clinic_id(), new_clinic_id()
    patient_id = await create(http, bearer(clinic_a), last_name="Tenantproof")
    stored = await attacker.get(f"{PREFIX}{{{clinic_a}}}:{kind}:{patient_id}")
    assert stored is not None  # written through by the create
    if rewrite_header:
        stored = rehomed(stored, clinic_a, clinic_b)
    await attacker.set(f"{PREFIX}{{{clinic_b}}}:{kind}:{patient_id}", stored)

    path = f"/v1/patients/{patient_id}" + ("/summary" if kind == "summary" else "")
    response = await http.get(path, headers=bearer(clinic_b))
    assert response.status_code == 404  # clinic B has no such patient
    assert "Tenantproof" not in response.text


@pytest.mark.parametrize("kind", ["profile", "summary"])
async def test_one_patients_entry_copied_under_anothers_key_is_a_miss(
    http: httpx.AsyncClient, attacker: redis.Redis, kind: str
) -> None:
    clinic = new_clinic_id()
    headers = bearer(clinic)
    shown = await create(http, headers, last_name="Shown")
    asked = await create(http, headers, last_name="Asked")
    stored = await attacker.get(f"{PREFIX}{{{clinic}}}:{kind}:{shown}")
    await attacker.set(f"{PREFIX}{{{clinic}}}:{kind}:{asked}", stored)

    path = f"/v1/patients/{asked}" + ("/summary" if kind == "summary" else "")
    response = await http.get(path, headers=headers)
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["last_name"]) == (asked, "Asked")


async def test_a_search_page_copied_from_another_clinic_is_a_miss(
    http: httpx.AsyncClient, attacker: redis.Redis
) -> None:
    clinic_a, clinic_b = new_clinic_id(), new_clinic_id()
    await create(http, bearer(clinic_a), last_name="Wexcombe")
    await create(http, bearer(clinic_b), last_name="Wexcombe")
    params = {"q": "wexcombe"}
    a_page = (await http.get("/v1/patients", params=params, headers=bearer(clinic_a))).json()
    b_page = (await http.get("/v1/patients", params=params, headers=bearer(clinic_b))).json()
    assert a_page["items"][0]["id"] != b_page["items"][0]["id"]
    a_key, b_key = await search_key(attacker, clinic_a), await search_key(attacker, clinic_b)
    b_stored = await attacker.get(b_key)
    a_stored = await attacker.get(a_key)
    # A's page, its header taking B's clinic and current generation.
    b_head, _, _ = b_stored.partition(b"\n")
    _, _, a_body = a_stored.partition(b"\n")
    await attacker.set(b_key, b_head + b"\n" + a_body)

    again = (await http.get("/v1/patients", params=params, headers=bearer(clinic_b))).json()
    assert again == b_page
