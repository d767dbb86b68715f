"""The patient CRUD API, end to end through the ASGI app and real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.factories import bearer, new_clinic_id, patient_body

PROBLEM = "application/problem+json"


class TestCreate:
    async def test_returns_the_patient_with_location_and_normalised_contacts(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sent = patient_body(mrn="M-1", phones=["(415) 555-0134"], email="Ada.Lovelace@Example.com")
        response = await client.post("/v1/patients", json=sent, headers=auth)
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/v1/patients/{body['id']}"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["etag"] == '"1"'
        assert uuid.UUID(body["id"]).version == 7
        assert body["mrn"] == "M-1"
        assert body["phones"] == ["+14155550134"]
        assert body["email"] == "Ada.Lovelace@Example.com"
        assert body["emergency_contacts"] == [
            {"name": "Charles Babbage", "relationship": "friend", "phone": "+14155550199"}
        ]
        assert body["insurance"] == [{"payer": "Acme Health", "member_id": "XZ-123"}]
        assert body["version"] == 1

    async def test_duplicate_mrn_in_the_clinic_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await client.post("/v1/patients", json=patient_body(mrn="DUP"), headers=auth)
        second = await client.post("/v1/patients", json=patient_body(mrn="DUP"), headers=auth)
        assert first.status_code == 201
        assert second.status_code == 409
        assert second.headers["content-type"] == PROBLEM

    async def test_the_same_mrn_in_another_clinic_is_fine(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await client.post("/v1/patients", json=patient_body(mrn="SHARED"), headers=auth)
        other = await client.post(
            "/v1/patients", json=patient_body(mrn="SHARED"), headers=bearer(new_clinic_id())
        )
        assert other.status_code == 201

    async def test_unparseable_but_plausible_phone_is_kept_as_typed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/patients", json=patient_body(phones=["0000000"]), headers=auth
        )
        assert response.status_code == 201
        assert response.json()["phones"] == ["0000000"]


class TestValidation:
    async def _post(
        self, client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
    ) -> httpx.Response:
        return await client.post("/v1/patients", json=patient_body(**fields), headers=auth)

    async def test_missing_last_name(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        body = patient_body()
        del body["last_name"]
        response = await client.post("/v1/patients", json=body, headers=auth)
        assert response.status_code == 422
        problem = response.json()
        assert response.headers["content-type"] == PROBLEM
        assert problem["status"] == 422
        assert "last_name" in problem["detail"]

    async def test_errors_never_echo_the_input(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await self._post(client, auth, date_of_birth="Zebulon-Quixote", sex="Zebulon")
        assert response.status_code == 422
        assert "Zebulon" not in response.text

    async def test_rejects_bad_values(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        cases: list[dict[str, Any]] = [
            {"date_of_birth": "2023-02-30"},
            {"date_of_birth": "2999-01-01"},
            {"sex": "robot"},
            {"status": "archived"},
            {"phones": ["call me"]},
            {"phones": ["12"]},
            {"email": "not-an-email"},
            {"last_name": "x" * 101},
            {"last_name": "nul\x00byte"},
            {"mrn": ""},
            {"unknown_field": 1},
            {"phones": ["4155550134"] * 6},
        ]
        for fields in cases:
            response = await self._post(client, auth, **fields)
            assert response.status_code == 422, fields

    async def test_malformed_json_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/patients",
            content=b"{not json",
            headers={**auth, "content-type": "application/json"},
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM

    async def test_oversized_body_is_413(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/patients",
            content=b"x" * 200_000,
            headers={**auth, "content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM

    async def test_non_uuid_id_is_a_clear_4xx(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/patients/not-a-uuid", headers=auth)
        assert response.status_code == 400
        assert "patient_id" in response.json()["detail"]


class TestRead:
    async def test_get_returns_etag_and_no_store(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        response = await client.get(f"/v1/patients/{created['id']}", headers=auth)
        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == '"1"'
        assert response.headers["cache-control"] == "no-store"

    async def test_unknown_id_is_404(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        response = await client.get(f"/v1/patients/{uuid.uuid4()}", headers=auth)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM

    async def test_another_clinics_patient_is_404_like_an_unknown_one(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        intruder = bearer(new_clinic_id())
        for method in ("GET", "PATCH", "DELETE"):
            response = await client.request(
                method,
                f"/v1/patients/{created['id']}",
                headers=intruder,
                json={"first_name": "Eve"} if method == "PATCH" else None,
            )
            assert response.status_code == 404, method
            assert response.json()["detail"] == "no patient with this id in your clinic"
        still = await client.get(f"/v1/patients/{created['id']}", headers=auth)
        assert still.json()["first_name"] == "Ada"


class TestUpdate:
    async def test_partial_update_changes_only_what_was_sent(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        response = await client.patch(
            f"/v1/patients/{created['id']}",
            json={"first_name": "Augusta", "middle_name": None, "phones": ["+1 212 555 0100"]},
            headers=auth,
        )
        assert response.status_code == 200
        body = response.json()
        assert body["first_name"] == "Augusta"
        assert body["middle_name"] is None
        assert body["phones"] == ["+12125550100"]
        assert body["last_name"] == created["last_name"]
        assert body["insurance"] == created["insurance"]
        assert body["version"] == 2
        assert response.headers["etag"] == '"2"'

    async def test_if_match_stale_version_is_412(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        url = f"/v1/patients/{created['id']}"
        ok = await client.patch(url, json={"first_name": "B"}, headers={**auth, "If-Match": '"1"'})
        stale = await client.patch(
            url, json={"first_name": "C"}, headers={**auth, "If-Match": '"1"'}
        )
        assert ok.status_code == 200
        assert stale.status_code == 412
        assert (await client.get(url, headers=auth)).json()["first_name"] == "B"

    async def test_malformed_if_match_is_400(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        response = await client.patch(
            f"/v1/patients/{created['id']}",
            json={"first_name": "B"},
            headers={**auth, "If-Match": "three"},
        )
        assert response.status_code == 400

    async def test_required_fields_cannot_be_cleared(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        response = await client.patch(
            f"/v1/patients/{created['id']}", json={"last_name": None}, headers=auth
        )
        assert response.status_code == 400
        assert "last_name" in response.json()["detail"]

    async def test_changing_to_a_taken_mrn_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        await create_patient(auth, mrn="TAKEN")
        other = await create_patient(auth)
        response = await client.patch(
            f"/v1/patients/{other['id']}", json={"mrn": "TAKEN"}, headers=auth
        )
        assert response.status_code == 409

    async def test_email_change_and_clear(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth)
        url = f"/v1/patients/{created['id']}"
        changed = await client.patch(url, json={"email": "New@Example.org"}, headers=auth)
        assert changed.json()["email"] == "New@Example.org"
        cleared = await client.patch(url, json={"email": None, "insurance": []}, headers=auth)
        assert cleared.json()["email"] is None
        assert cleared.json()["insurance"] == []


class TestArchive:
    async def test_archived_patient_is_gone_but_its_mrn_stays_taken(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth, mrn="ARCH")
        url = f"/v1/patients/{created['id']}"
        assert (await client.delete(url, headers=auth)).status_code == 204
        assert (await client.get(url, headers=auth)).status_code == 404
        assert (await client.patch(url, json={"first_name": "Z"}, headers=auth)).status_code == 404
        assert (await client.delete(url, headers=auth)).status_code == 404
        reuse = await client.post("/v1/patients", json=patient_body(mrn="ARCH"), headers=auth)
        assert reuse.status_code == 409
