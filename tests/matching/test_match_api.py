"""POST /v1/patients/match: the same person found and graded; strangers and twins are not
`certain`; too little to go on is a 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.factories import bearer, new_clinic_id

# The roster holds look-alikes on purpose (namesakes, twins, families): register them all.
LOOK_ALIKES = {"allow_duplicate": "true"}

HOME = {"lines": ["7 Wallaby Place"], "city": "Cleveland", "postal_code": "2119"}
ROSTER = [
    {
        "mrn": "M-1",
        "first_name": "Mitchell",
        "last_name": "Green",
        "date_of_birth": "1956-04-09",
        "sex": "male",
        "phones": ["(415) 555-0134"],
        "address": HOME,
    },
    # Twins: same surname, date of birth and address, another first name.
    {
        "mrn": "M-2",
        "first_name": "Michael",
        "last_name": "Green",
        "date_of_birth": "1956-04-09",
        "sex": "male",
        "address": HOME,
    },
    {"mrn": "M-3", "first_name": "Harley", "last_name": "McCarthy", "date_of_birth": "1908-04-19"},
    {"mrn": "M-4", "first_name": "Madeline", "last_name": "Mason", "date_of_birth": "1981-11-28"},
]

Match = Callable[..., Any]


@pytest.fixture
async def match(client: httpx.AsyncClient) -> Match:
    headers = bearer(new_clinic_id())
    for patient in ROSTER:
        body = {"phones": [], **patient}
        response = await client.post("/v1/patients", json=body, headers=headers, params=LOOK_ALIKES)
        assert response.status_code == 201, response.text

    async def run(body: dict[str, Any], expect: int = 200, **params: Any) -> Any:
        response = await client.post(
            "/v1/patients/match", json=body, params=params, headers=headers
        )
        assert response.status_code == expect, response.text
        return response.json()

    return run


def mrns(result: dict[str, Any]) -> list[str]:
    return [item["patient"]["mrn"] for item in result["items"]]


class TestMatch:
    async def test_the_same_person_typed_with_errors_is_found_first(self, match: Match) -> None:
        result = await match(
            {"first_name": "Mitchel", "last_name": "Grene", "date_of_birth": "1956-04-09"}
        )
        assert mrns(result)[0] == "M-1"
        first = result["items"][0]
        assert first["matched"]["date_of_birth"] == "exact"
        assert first["matched"]["last_name"] == "typo"
        assert 0 <= first["score"] <= 1

    async def test_everything_agreeing_is_certain(self, match: Match) -> None:
        body = {**ROSTER[0], "mrn": "NEW-1"}
        result = await match(body)
        assert result["items"][0]["patient"]["mrn"] == "M-1"
        assert result["items"][0]["grade"] == "certain"
        assert result["items"][0]["matched"]["phone"] == "exact"

    async def test_a_twin_is_never_certain(self, match: Match) -> None:
        body = {"first_name": "Michael", "last_name": "Green", "date_of_birth": "1956-04-09",
                "address": HOME}  # fmt: skip
        result = await match(body)
        grades = {item["patient"]["mrn"]: item["grade"] for item in result["items"]}
        assert grades["M-2"] == "certain"
        assert grades.get("M-1") != "certain"  # same surname, date, address: a twin

    async def test_only_certain_answers_one_or_none(self, match: Match) -> None:
        body = {**ROSTER[0], "mrn": "NEW-1"}
        assert mrns(await match(body, only_certain="true")) == ["M-1"]
        vague = {"last_name": "Green"}
        assert (await match(vague, only_certain="true"))["items"] == []

    async def test_a_wrong_date_of_birth_is_a_weaker_match_not_none(self, match: Match) -> None:
        result = await match(
            {"first_name": "Madeline", "last_name": "Mason", "date_of_birth": "1918-11-28"}
        )
        assert mrns(result)[0] == "M-4"
        assert result["items"][0]["grade"] != "certain"
        assert result["items"][0]["matched"]["date_of_birth"] == "transposed"

    async def test_strangers_are_eliminated_not_listed(self, match: Match) -> None:
        result = await match({"first_name": "Zed", "last_name": "Quimby"})
        assert result["items"] == []
        assert result["eliminated"] >= 0

    async def test_another_clinic_sees_none_of_them(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/patients/match",
            json={"first_name": "Mitchell", "last_name": "Green"},
            headers=bearer(new_clinic_id()),
        )
        assert response.json() == {"items": [], "eliminated": 0}


class TestMatchInput:
    @pytest.mark.parametrize(
        "body", [{}, {"first_name": "Mitchell"}, {"date_of_birth": "1956-04-09"}]
    )
    async def test_too_little_to_go_on_is_a_400(self, match: Match, body: dict[str, Any]) -> None:
        problem = await match(body, expect=400)
        assert "last name" in problem["detail"]

    async def test_a_date_of_birth_with_one_other_field_is_enough(self, match: Match) -> None:
        result = await match({"date_of_birth": "1908-04-19", "first_name": "Harley"})
        assert mrns(result)[0] == "M-3"

    @pytest.mark.parametrize("limit", ["0", "51", "x"])
    async def test_limit_out_of_range_is_a_400(self, match: Match, limit: str) -> None:
        problem = await match({"last_name": "Green"}, expect=400, limit=limit)
        assert "limit" in problem["detail"]

    async def test_a_malformed_field_is_a_clear_422(self, match: Match) -> None:
        problem = await match({"last_name": "Green", "date_of_birth": "9/4/56"}, expect=422)
        assert "date_of_birth" in problem["detail"]

    async def test_needs_the_read_scope(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/patients/match",
            json={"last_name": "Green"},
            headers=bearer(new_clinic_id(), scopes="patients:write"),
        )
        assert response.status_code == 403

    async def test_a_whole_registration_body_may_be_checked(self, match: Match) -> None:
        body = {**ROSTER[0], "status": "active", "insurance": [], "emergency_contacts": []}
        assert mrns(await match(body))[0] == "M-1"

    async def test_an_unknown_field_is_a_422_not_ignored(self, match: Match) -> None:
        problem = await match({"last_name": "Green", "lastname": "Grene"}, expect=422)
        assert "lastname" in problem["detail"]

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_other_methods_are_405(self, client: httpx.AsyncClient, method: str) -> None:
        response = await client.request(
            method, "/v1/patients/match", headers=bearer(new_clinic_id())
        )
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.headers["content-type"] == "application/problem+json"
