"""The patient address: written on create and PATCH, shown in the profile, searchable by
postal code, loaded by the importer from CSV columns or a JSONL object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from patient_search import cli
from patient_search.settings import Settings
from tests.factories import bearer, new_clinic_id

ADDRESS = {
    "lines": ["12 Wallaby Place", "Flat 3"],
    "city": "Cleveland",
    "state": "SA",
    "postal_code": "sw1a 1aa",
    "country": "GB",
}


class TestAddressOnTheRecord:
    async def test_created_with_an_address_and_shown_in_the_profile(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth, address=ADDRESS)
        assert created["address"] == ADDRESS
        profile = (await client.get(f"/v1/patients/{created['id']}", headers=auth)).json()
        assert profile["address"] == ADDRESS

    async def test_patch_replaces_and_null_clears_the_address(
        self, client: httpx.AsyncClient, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        created = await create_patient(auth, address=ADDRESS)
        url = f"/v1/patients/{created['id']}"
        moved = {"lines": ["1 New Road"], "city": "Hobart", "postal_code": "7000"}
        response = await client.patch(url, json={"address": moved}, headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["address"] == {**moved, "state": None, "country": None}
        response = await client.patch(url, json={"address": None}, headers=auth)
        assert response.json()["address"] is None
        response = await client.patch(url, json={"address": {}}, headers=auth)
        assert response.json()["address"] is None  # no part given: no address

    async def test_a_patient_without_an_address_has_none(
        self, auth: dict[str, str], create_patient: Callable[..., Any]
    ) -> None:
        assert (await create_patient(auth))["address"] is None

    @pytest.mark.parametrize(
        "address",
        [
            {"lines": ["a", "b", "c", "d"]},
            {"city": "Bad\u0000City"},
            {"postal_code": "x" * 21},
            {"city": ""},
            {"street": "1 Main St"},
            {"lines": "12 Wallaby Place"},
        ],
    )
    async def test_a_malformed_address_is_a_clear_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], address: dict[str, Any]
    ) -> None:
        body = {"mrn": "ADDR-1", "last_name": "Lovelace", "address": address}
        response = await client.post("/v1/patients", json=body, headers=auth)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert "address" in response.json()["detail"]


class TestPostalCodeFilter:
    async def test_postal_code_finds_its_patients_however_it_is_written(
        self, client: httpx.AsyncClient, create_patient: Callable[..., Any]
    ) -> None:
        headers = bearer(new_clinic_id())
        here = await create_patient(headers, last_name="Here", address={"postal_code": "SW1A 1AA"})
        await create_patient(headers, last_name="Elsewhere", address={"postal_code": "EC1A 1BB"})
        await create_patient(headers, last_name="Nowhere")
        for typed in ("sw1a1aa", "SW1A 1AA", "sw1a-1aa"):
            response = await client.get(
                "/v1/patients", params={"postal_code": typed}, headers=headers
            )
            assert response.status_code == 200, response.text
            assert [item["id"] for item in response.json()["items"]] == [here["id"]], typed

    async def test_postal_code_narrows_a_name_search(
        self, client: httpx.AsyncClient, create_patient: Callable[..., Any]
    ) -> None:
        headers = bearer(new_clinic_id())
        here = await create_patient(headers, last_name="Smith", address={"postal_code": "2119"})
        await create_patient(headers, last_name="Smith", address={"postal_code": "3165"})
        response = await client.get(
            "/v1/patients", params={"q": "smith", "postal_code": "2119"}, headers=headers
        )
        assert [item["id"] for item in response.json()["items"]] == [here["id"]]

    async def test_another_clinics_postal_code_finds_nothing(
        self, client: httpx.AsyncClient, create_patient: Callable[..., Any]
    ) -> None:
        await create_patient(bearer(new_clinic_id()), address={"postal_code": "90210"})
        response = await client.get(
            "/v1/patients", params={"postal_code": "90210"}, headers=bearer(new_clinic_id())
        )
        assert response.json()["items"] == []


class TestImportedAddress:
    @pytest.fixture(autouse=True)
    def _cli_uses_test_settings(self, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
        monkeypatch.setattr(cli, "get_settings", lambda: settings)

    def test_csv_address_columns_and_a_jsonl_address_object(
        self, tmp_path: Path, superuser_conn: psycopg.Connection[Any]
    ) -> None:
        clinic = new_clinic_id()
        csv_path = tmp_path / "patients.csv"
        csv_path.write_text(
            "mrn,last_name,address_line1,address_line2,city,state,postal_code,country\n"
            "C1,Green,7 Wallaby Place,Delmar,Cleveland,SA,2119,AU\n"
            "C2,Mason,,,,,,\n",
            encoding="utf-8",
        )
        jsonl_path = tmp_path / "patients.jsonl"
        jsonl_path.write_text(
            '{"mrn": "J1", "last_name": "Webb", "address": {"lines": ["6 Kent Street"],'
            ' "city": "Towradgi", "postal_code": "3107 "}}\n'
            '{"mrn": "J2", "last_name": "Bad", "address": {"lines": ["1", "2", "3", "4"]}}\n',
            encoding="utf-8",
        )
        assert cli.main(["import", str(csv_path), "--clinic", clinic]) == 0
        assert cli.main(["import", str(jsonl_path), "--clinic", clinic]) == 1  # J2 rejected
        rows = superuser_conn.execute(
            "SELECT mrn, address, postal_code_key FROM patients WHERE clinic_id = %s",
            (clinic,),
        ).fetchall()
        assert {mrn: (address, key) for mrn, address, key in rows} == {
            "C1": (
                {
                    "lines": ["7 Wallaby Place", "Delmar"],
                    "city": "Cleveland",
                    "state": "SA",
                    "postal_code": "2119",
                    "country": "AU",
                },
                "2119",
            ),
            "C2": (None, None),
            "J1": (
                {"lines": ["6 Kent Street"], "city": "Towradgi", "postal_code": "3107"},
                "3107",
            ),
        }
