"""Search that survives a wrong field, end to end: dates as evidence, partial and split names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.factories import bearer, new_clinic_id

# The roster holds look-alikes on purpose (namesakes, twins, families): register them all.
LOOK_ALIKES = {"allow_duplicate": "true"}

ROSTER = [
    {"mrn": "E-1", "first_name": "Mya", "last_name": "McCarthy", "date_of_birth": "1967-05-09"},
    {"mrn": "E-2", "first_name": "William", "last_name": "Millar", "date_of_birth": "1934-07-31"},
    {"mrn": "E-3", "first_name": "William", "last_name": "Millar", "date_of_birth": "1980-01-01"},
    {"mrn": "E-4", "first_name": "Jayden", "last_name": "White", "date_of_birth": "1990-02-03"},
    {"mrn": "E-5", "first_name": "Joshua", "last_name": "Browne", "date_of_birth": "1985-06-07"},
    {"mrn": "E-6", "first_name": "Bailey", "last_name": "Satterley", "date_of_birth": "1971-08-09"},
    {"mrn": "E-7", "first_name": "Jared", "last_name": "Millar", "date_of_birth": "1950-10-11"},
    {"mrn": "E-8", "first_name": "Ann", "last_name": "Other", "date_of_birth": "1934-07-31"},
    {
        "mrn": "E-9",
        "first_name": "María",
        "last_name": "García-López",
        "date_of_birth": "1960-01-02",
    },
]

Search = Callable[..., Any]


@pytest.fixture
async def search(client: httpx.AsyncClient) -> Search:
    headers = bearer(new_clinic_id())
    for patient in ROSTER:
        response = await client.post(
            "/v1/patients", json=patient, headers=headers, params=LOOK_ALIKES
        )
        assert response.status_code == 201, response.text

    async def run(**params: Any) -> list[dict[str, Any]]:
        response = await client.get("/v1/patients", params=params, headers=headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
        return items

    return run


def mrns(items: list[dict[str, Any]]) -> list[str]:
    return [item["mrn"] for item in items]


class TestDateAsEvidence:
    async def test_a_mistyped_date_in_the_box_does_not_hide_the_name(self, search: Search) -> None:
        items = await search(q="mya mccarthy 1912-07-29")
        assert mrns(items) == ["E-1"]
        assert items[0]["matched"] == {
            "first_name": "exact",
            "last_name": "exact",
            "date_of_birth": "different",
        }

    async def test_a_near_date_ranks_its_patient_first_and_says_so(self, search: Search) -> None:
        items = await search(q="william millar 1943-07-31")  # 1934 with two digits transposed
        assert mrns(items)[:2] == ["E-2", "E-3"]
        assert items[0]["match"] == "dob_near"
        assert items[0]["matched"]["date_of_birth"] == "transposed"

    async def test_exact_on_every_field_ranks_above_any_partial_or_near_match(
        self, search: Search
    ) -> None:
        items = await search(q="william millar 1980-01-01")
        assert mrns(items)[0] == "E-3"
        assert items[0]["match"] == "exact"

    async def test_a_replaced_first_name_with_the_right_date(self, search: Search) -> None:
        items = await search(q="jayed millar 1934-07-31")
        assert mrns(items)[0] == "E-2"
        assert items[0]["match"] == "partial"
        assert items[0]["matched"] == {"last_name": "exact", "date_of_birth": "exact"}
        # Born that day but sharing no name: listed, below the patient who shares one.
        assert "E-8" in mrns(items)[1:]
        assert items[mrns(items).index("E-8")]["matched"] == {"date_of_birth": "exact"}

    async def test_the_date_parameter_filters_and_names_only_rank(self, search: Search) -> None:
        items = await search(q="jayed millar", date_of_birth="1934-07-31")
        assert mrns(items)[0] == "E-2"
        assert set(mrns(items)) == {"E-2", "E-8"}


class TestSplitAndJoinedNames:
    @pytest.mark.parametrize(
        ("q", "mrn"),
        [("jayde n white", "E-4"), ("joshu a browne", "E-5"), ("bailey satte rley", "E-6")],
    )
    async def test_a_space_typed_inside_a_name(self, search: Search, q: str, mrn: str) -> None:
        assert mrns(await search(q=q))[0] == mrn

    async def test_a_compound_typed_together_or_apart(self, search: Search) -> None:
        for q in ("maria garcialopez", "maria garcia lopez", "maria lopez"):
            assert mrns(await search(q=q))[0] == "E-9", q


class TestMatchedAndHighlights:
    async def test_each_hit_says_how_each_field_agreed_and_where(self, search: Search) -> None:
        items = await search(q="wilkiam millar")
        first = items[0]
        assert first["mrn"] in {"E-2", "E-3"}
        assert first["matched"] == {"first_name": "typo", "last_name": "exact"}
        assert first["highlights"] == {"first_name": [[0, 7]], "last_name": [[0, 6]]}

    async def test_a_single_name_is_highlighted_too(self, search: Search) -> None:
        items = await search(q="satter")
        assert items[0]["matched"] == {"last_name": "prefix"}
        assert items[0]["highlights"] == {"last_name": [[0, 6]]}
