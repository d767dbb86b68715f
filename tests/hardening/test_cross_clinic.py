"""Cross-clinic probes through every path: another clinic's patients are never seen.

Clinic B's patients are looked up, searched for by everything that identifies them, and paged
to with B's cursors, all with clinic A's token — after B itself has just done the same, so that
anything B's requests left behind (a cache entry, a warmed plan) is there to leak.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.factories import bearer, new_clinic_id, patient_body

B_PATIENTS = [
    {
        "mrn": "BX-000417",
        "first_name": "Wilhelmina",
        "last_name": "Quartermaine",
        "date_of_birth": "1961-07-04",
        "phones": ["(628) 555-0147"],
        "email": "w.quartermaine@example.net",
    },
    {
        "mrn": "BX-000418",
        "first_name": "Bartholomew",
        "last_name": "Quartermaine-Ortiz",
        "date_of_birth": "1990-02-28",
        "phones": ["+1 628 555 0192"],
        "email": "bart.qo@example.net",
    },
]


def _probes() -> list[dict[str, Any]]:
    """Every way of asking for B's patients."""
    probes: list[dict[str, Any]] = []
    for p in B_PATIENTS:
        first, last = p["first_name"], p["last_name"]
        phone_digits = "".join(c for c in p["phones"][0] if c.isdigit())
        month, day, year = p["date_of_birth"][5:7], p["date_of_birth"][8:], p["date_of_birth"][:4]
        probes += [
            {"q": f"{first} {last}"},
            {"q": f"{last}, {first}"},
            {"q": last[:4]},
            {"q": first[:3] + " " + last[:3]},
            {"q": last.replace("a", "e", 1)},  # a typo
            {"q": last.split("-")[0]},
            {"q": p["mrn"]},
            {"q": p["email"]},
            {"q": p["email"].upper()},
            {"q": p["phones"][0]},
            {"q": phone_digits},
            {"q": f"{last} {month}/{day}/{year}"},
            {"q": p["date_of_birth"]},
            {"mrn": p["mrn"]},
            {"email": p["email"]},
            {"phone": p["phones"][0]},
            {"phone": phone_digits[-4:]},
            {"phone": phone_digits[-7:]},
            {"date_of_birth": p["date_of_birth"]},
            {"q": last, "status": "active"},
            {"q": last, "date_of_birth": p["date_of_birth"], "limit": 100},
            {"q": last, "offset": 1},
        ]
    return probes


@pytest.fixture
async def two_clinics(
    client: httpx.AsyncClient, create_patient: Callable[..., Any]
) -> tuple[dict[str, str], dict[str, str], list[dict[str, Any]]]:
    clinic_a, clinic_b = bearer(new_clinic_id()), bearer(new_clinic_id())
    theirs = [await create_patient(clinic_b, **fields) for fields in B_PATIENTS]
    # A has patients too, none like B's, so that A's searches run over real rows.
    for n in range(3):
        await create_patient(clinic_a, last_name=f"Okonkwo{'x' * n}", first_name="Ifeoma")
    return clinic_a, clinic_b, theirs


def _assert_nothing_of(theirs: list[dict[str, Any]], response: httpx.Response) -> None:
    text = response.text
    for patient in theirs:
        for value in (patient["id"], patient["mrn"], patient["last_name"], patient["email"]):
            assert value not in text, f"leaked {value!r}"
        assert patient["first_name"] not in text
        assert patient["phones"][0] not in text


async def test_lookups_by_another_clinics_ids_are_404(
    client: httpx.AsyncClient, two_clinics: tuple[dict[str, str], dict[str, str], list[Any]]
) -> None:
    clinic_a, clinic_b, theirs = two_clinics
    for patient in theirs:
        for suffix in ("", "/summary"):
            url = f"/v1/patients/{patient['id']}{suffix}"
            assert (await client.get(url, headers=clinic_b)).status_code == 200  # warm, as B
            response = await client.get(url, headers=clinic_a)
            assert response.status_code == 404
            _assert_nothing_of(theirs, response)
        patched = await client.patch(
            f"/v1/patients/{patient['id']}",
            json={"last_name": "Hijacked"},
            headers={**clinic_a, "If-Match": '"1"'},
        )
        assert patched.status_code == 404
        _assert_nothing_of(theirs, patched)
        deleted = await client.delete(f"/v1/patients/{patient['id']}", headers=clinic_a)
        assert deleted.status_code == 404
        still = await client.get(f"/v1/patients/{patient['id']}", headers=clinic_b)
        assert still.status_code == 200 and still.json()["version"] == 1


async def test_searches_for_another_clinics_patients_find_nothing(
    client: httpx.AsyncClient, two_clinics: tuple[dict[str, str], dict[str, str], list[Any]]
) -> None:
    clinic_a, clinic_b, theirs = two_clinics
    probes = _probes()
    found_by_b = 0
    for params in probes:
        as_b = await client.get("/v1/patients", params=params, headers=clinic_b)
        assert as_b.status_code == 200, (params, as_b.text)
        found_by_b += bool(as_b.json()["items"])
        as_a = await client.get("/v1/patients", params=params, headers=clinic_a)
        assert as_a.status_code == 200, (params, as_a.text)
        assert as_a.json()["items"] == [], params
        assert as_a.json()["total"] == 0, params
        _assert_nothing_of(theirs, as_a)
    # The probes are real: B finds its own patients with nearly all of them.
    assert found_by_b >= len(probes) * 0.8


async def test_another_clinics_cursor_is_refused(
    client: httpx.AsyncClient,
    two_clinics: tuple[dict[str, str], dict[str, str], list[Any]],
    create_patient: Callable[..., Any],
) -> None:
    clinic_a, clinic_b, theirs = two_clinics
    for n in range(4):
        await create_patient(clinic_b, last_name="Quartermaine", first_name=f"Extra{n}")
    params = {"q": "quartermaine", "limit": 2}
    page = (await client.get("/v1/patients", params=params, headers=clinic_b)).json()
    assert page["next_cursor"]
    # The same query and cursor from clinic A: refused, not a page of B.
    reused = await client.get(
        "/v1/patients", params={**params, "cursor": page["next_cursor"]}, headers=clinic_a
    )
    assert reused.status_code == 400
    _assert_nothing_of(theirs, reused)
    # And A's own cursors do not open B's pages either.
    for n in range(4):
        await create_patient(clinic_a, last_name="Quartermaine", first_name=f"Mine{n}")
    mine = (await client.get("/v1/patients", params=params, headers=clinic_a)).json()
    assert mine["next_cursor"] and mine["total"] == 4
    for item in mine["items"]:
        assert item["first_name"].startswith("Mine")
    crossed = await client.get(
        "/v1/patients", params={**params, "cursor": mine["next_cursor"]}, headers=clinic_b
    )
    assert crossed.status_code == 400


async def test_the_same_mrn_in_two_clinics_stays_two_patients(
    client: httpx.AsyncClient, two_clinics: tuple[dict[str, str], dict[str, str], list[Any]]
) -> None:
    clinic_a, clinic_b, theirs = two_clinics
    mrn = theirs[0]["mrn"]
    created = await client.post(
        "/v1/patients", json=patient_body(mrn=mrn, last_name="Okafor"), headers=clinic_a
    )
    assert created.status_code == 201
    as_a = (await client.get("/v1/patients", params={"mrn": mrn}, headers=clinic_a)).json()
    assert [item["last_name"] for item in as_a["items"]] == ["Okafor"]
    as_b = (await client.get("/v1/patients", params={"mrn": mrn}, headers=clinic_b)).json()
    assert [item["last_name"] for item in as_b["items"]] == [theirs[0]["last_name"]]
    # Changing A's copy to B's other MRN is fine in A, and B's patients are unchanged.
    moved = await client.patch(
        created.headers["location"], json={"mrn": theirs[1]["mrn"]}, headers=clinic_a
    )
    assert moved.status_code == 200
    for patient in theirs:
        again = await client.get(f"/v1/patients/{patient['id']}", headers=clinic_b)
        assert again.json()["mrn"] == patient["mrn"] and again.json()["version"] == 1
