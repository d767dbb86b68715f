"""POST /v1/patients runs the duplicate check: 409 duplicate-suspected with ids only, or a
registration past it with ?allow_duplicate=true that the audit trail records."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.factories import bearer, new_clinic_id

PERSON = {
    "first_name": "Harley",
    "last_name": "McCarthy",
    "date_of_birth": "1908-04-19",
    "sex": "male",
    "phones": ["(212) 555-0100"],
}


def actions(conn: psycopg.Connection[Any], clinic: str, patient_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT action FROM access_audit WHERE clinic_id = %s AND patient_id = %s ORDER BY id",
        (clinic, patient_id),
    ).fetchall()
    return [row[0] for row in rows]


class TestDuplicateCheckOnCreate:
    async def test_the_same_person_again_is_a_409_naming_only_ids(
        self, client: httpx.AsyncClient
    ) -> None:
        headers = bearer(new_clinic_id())
        first = await client.post("/v1/patients", json={**PERSON, "mrn": "A-1"}, headers=headers)
        assert first.status_code == 201, first.text
        again = {**PERSON, "mrn": "A-2", "first_name": "Harly"}  # a typo, at another desk
        response = await client.post("/v1/patients", json=again, headers=headers)
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/duplicate-suspected")
        [candidate] = problem["candidates"]
        assert set(candidate) == {"id", "grade", "score"}  # no other patient data
        assert candidate["id"] == first.json()["id"]
        assert candidate["grade"] in {"certain", "probable"}
        assert "McCarthy" not in response.text and "1908" not in response.text
        # Nothing was registered.
        found = await client.get("/v1/patients", params={"mrn": "A-2"}, headers=headers)
        assert found.json()["items"] == []

    async def test_allow_duplicate_registers_and_the_override_is_audited(
        self, client: httpx.AsyncClient, superuser_conn: psycopg.Connection[Any]
    ) -> None:
        clinic = new_clinic_id()
        headers = bearer(clinic)
        first = await client.post("/v1/patients", json={**PERSON, "mrn": "A-1"}, headers=headers)
        second = await client.post(
            "/v1/patients",
            json={**PERSON, "mrn": "A-2"},
            headers=headers,
            params={"allow_duplicate": "true"},
        )
        assert second.status_code == 201, second.text
        assert actions(superuser_conn, clinic, first.json()["id"]) == ["create"]
        assert actions(superuser_conn, clinic, second.json()["id"]) == ["create_duplicate"]

    async def test_allow_duplicate_without_a_suspect_is_a_plain_create(
        self, client: httpx.AsyncClient, superuser_conn: psycopg.Connection[Any]
    ) -> None:
        clinic = new_clinic_id()
        response = await client.post(
            "/v1/patients",
            json={**PERSON, "mrn": "A-1"},
            headers=bearer(clinic),
            params={"allow_duplicate": "true"},
        )
        assert response.status_code == 201
        assert actions(superuser_conn, clinic, response.json()["id"]) == ["create"]

    async def test_a_different_person_is_registered(self, client: httpx.AsyncClient) -> None:
        headers = bearer(new_clinic_id())
        await client.post("/v1/patients", json={**PERSON, "mrn": "A-1"}, headers=headers)
        other = {"mrn": "A-2", "first_name": "Madeline", "last_name": "Mason",
                 "date_of_birth": "1981-11-28"}  # fmt: skip
        assert (await client.post("/v1/patients", json=other, headers=headers)).status_code == 201

    async def test_a_taken_mrn_keeps_its_own_409(self, client: httpx.AsyncClient) -> None:
        headers = bearer(new_clinic_id())
        await client.post("/v1/patients", json={**PERSON, "mrn": "A-1"}, headers=headers)
        other = {"mrn": "A-1", "last_name": "Mason", "date_of_birth": "1981-11-28"}
        response = await client.post("/v1/patients", json=other, headers=headers)
        assert response.status_code == 409
        assert response.json()["type"] == "about:blank"
        assert "MRN" in response.json()["title"]

    async def test_another_clinics_patient_is_no_duplicate(self, client: httpx.AsyncClient) -> None:
        await client.post(
            "/v1/patients", json={**PERSON, "mrn": "A-1"}, headers=bearer(new_clinic_id())
        )
        response = await client.post(
            "/v1/patients", json={**PERSON, "mrn": "A-1"}, headers=bearer(new_clinic_id())
        )
        assert response.status_code == 201
