"""GET /v1/patients end to end: the ladder, the omnibox, filters, paging, isolation."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import bearer, new_clinic_id
from tests.instruments import CountingObserver

# The roster holds look-alikes on purpose (namesakes, twins, families): register them all.
LOOK_ALIKES = {"allow_duplicate": "true"}

ROSTER: list[dict[str, Any]] = [
    {
        "mrn": "A-100",
        "first_name": "John",
        "last_name": "Smith",
        "date_of_birth": "1975-03-14",
        "phones": ["(415) 555-0134"],
        "email": "jsmith@example.com",
    },
    {"mrn": "A-101", "first_name": "Jon", "last_name": "Smyth", "date_of_birth": "1980-01-02"},
    {
        "mrn": "A-102",
        "first_name": "Johanna",
        "last_name": "Smithers",
        "date_of_birth": "1990-05-05",
    },
    {
        "mrn": "A-103",
        "first_name": "William",
        "last_name": "Turner",
        "date_of_birth": "1960-07-07",
        "phones": ["212-555-0100"],
    },
    {"mrn": "A-104", "first_name": "Catherine", "last_name": "Zeta", "date_of_birth": "1969-09-25"},
    {
        "mrn": "A-105",
        "first_name": "José",
        "middle_name": "Luis",
        "last_name": "Núñez",
        "date_of_birth": "1985-11-30",
        "email": "Jose.Nunez@Example.org",
    },
    {
        "mrn": "A-106",
        "first_name": "María",
        "last_name": "García-López",
        "date_of_birth": "1992-02-29",
        "status": "inactive",
    },
    {
        "mrn": "A-107",
        "first_name": "Jane",
        "last_name": "Smith",
        "date_of_birth": "1975-03-14",
        "phones": ["415.555.0199"],
        "email": "jsmith@example.com",
    },
    {
        "mrn": "A-108",
        "first_name": "Alexander",
        "last_name": "Hamilton",
        "date_of_birth": "1957-01-11",
        "status": "deceased",
    },
]


@pytest.fixture
async def roster(client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    """A clinic with the roster; returns its headers and the MRN → id map."""
    headers = bearer(new_clinic_id())
    ids: dict[str, str] = {}
    for patient in ROSTER:
        response = await client.post(
            "/v1/patients", json=patient, headers=headers, params=LOOK_ALIKES
        )
        assert response.status_code == 201, response.text
        ids[patient["mrn"]] = response.json()["id"]
    return headers, ids


Search = Callable[..., Any]


@pytest.fixture
def search(client: httpx.AsyncClient, roster: tuple[dict[str, str], dict[str, str]]) -> Search:
    headers, _ = roster

    async def run(expect: int = 200, **params: Any) -> dict[str, Any]:
        response = await client.get("/v1/patients", params=params, headers=headers)
        assert response.status_code == expect, response.text
        body: dict[str, Any] = response.json()
        return body

    return run


@pytest.fixture
def statements(app: FastAPI) -> Iterator[Counter[str]]:
    """Statements the app runs during the test, by name."""
    state = app.state.services
    counting = CountingObserver(state.query_observer)
    state.query_observer = counting
    yield counting.counts
    state.query_observer = counting.inner


def mrns(body: dict[str, Any]) -> list[str]:
    return [item["mrn"] for item in body["items"]]


class TestLadder:
    async def test_exact_full_name_first_in_any_order(self, search: Search) -> None:
        for q in ("john smith", "smith john", "Smith, John", "JOHN   SMITH"):
            body = await search(q=q)
            assert mrns(body)[0] == "A-100", q
            assert body["items"][0]["match"] == "exact"

    async def test_prefix_of_every_token(self, search: Search) -> None:
        body = await search(q="joh smi")
        assert mrns(body)[:2] == ["A-102", "A-100"] or mrns(body)[:2] == ["A-100", "A-102"]
        assert {item["match"] for item in body["items"][:2]} == {"prefix"}

    async def test_single_short_prefix(self, search: Search) -> None:
        body = await search(q="sm")
        assert set(mrns(body)) >= {"A-100", "A-101", "A-102", "A-107"}
        assert all(item["match"] == "prefix" for item in body["items"])

    async def test_nickname_both_directions(self, search: Search) -> None:
        assert (await search(q="bill turner"))["items"][0]["mrn"] == "A-103"
        body = await search(q="bill")
        assert mrns(body) == ["A-103"]
        assert body["items"][0]["match"] == "nickname"

    async def test_phonetic(self, search: Search) -> None:
        body = await search(q="kathryn zeta")
        assert mrns(body)[0] == "A-104"
        assert body["items"][0]["match"] == "phonetic"

    async def test_typo_within_budget(self, search: Search) -> None:
        for q in ("jonh smith", "alexnader hamilton", "hamliton"):
            body = await search(q=q)
            assert body["items"], q
            assert body["items"][0]["mrn"] in {"A-100", "A-108"}, q

    async def test_exact_ranks_above_worse_rungs(self, search: Search) -> None:
        body = await search(q="smith")
        found = mrns(body)
        assert found[:2] in (["A-107", "A-100"], ["A-100", "A-107"])  # Jane, John: exact
        assert found.index("A-102") > 1  # Smithers: prefix
        assert found.index("A-101") > found.index("A-102")  # Smyth: phonetic
        scores = [item["score"] for item in body["items"]]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= score <= 1 for score in scores)

    async def test_accents_fold_both_ways(self, search: Search) -> None:
        assert mrns(await search(q="jose nunez"))[0] == "A-105"
        assert mrns(await search(q="JOSÉ NÚÑEZ"))[0] == "A-105"

    async def test_compound_surname_parts(self, search: Search) -> None:
        assert mrns(await search(q="lopez")) == ["A-106"]
        assert mrns(await search(q="maria garcia lopez"))[0] == "A-106"
        assert mrns(await search(q="garcialopez")) == ["A-106"]

    async def test_garbled_name_still_finds_partial_matches(self, search: Search) -> None:
        body = await search(q="alexander hxmxltxn")
        assert "A-108" in mrns(body)
        # alexander agrees, hxmxltxn agrees with nothing
        assert body["items"][0]["match"] == "partial"

    async def test_trigram_tier_only_for_tokens_no_patient_has(
        self, search: Search, statements: Counter[str]
    ) -> None:
        # Every token is a name of the clinic (or too short to garble): no trigram search,
        # though fewer than a page of patients match.
        await search(q="john smith")
        await search(q="de la smith")
        assert statements["search.similar_terms"] == 0
        await search(q="johm smith")
        assert statements["search.similar_terms"] == 1


class TestOmnibox:
    async def test_phone_in_any_format(self, search: Search) -> None:
        for q in ("4155550134", "(415) 555-0134", "+1 415 555 0134", "415.555.0134"):
            body = await search(q=q)
            assert mrns(body) == ["A-100"], q
            assert body["items"][0]["match"] == "phone"

    async def test_email_case_insensitive(self, search: Search) -> None:
        body = await search(q="JOSE.NUNEZ@example.ORG")
        assert mrns(body) == ["A-105"]
        assert body["items"][0]["match"] == "email"

    async def test_date_of_birth_formats(self, search: Search) -> None:
        for q in ("1975-03-14", "03/14/1975", "3/14/1975"):
            assert set(mrns(await search(q=q))) == {"A-100", "A-107"}, q

    async def test_mrn_first(self, search: Search) -> None:
        body = await search(q="A-103")
        assert mrns(body) == ["A-103"]
        assert body["items"][0]["match"] == "mrn"

    async def test_mixed_name_and_date(self, search: Search) -> None:
        body = await search(q="jane 03/14/1975")
        assert mrns(body)[0] == "A-107"  # John Smith, same birthday, follows (Jane ~ John)
        assert set(mrns(body)) <= {"A-107", "A-100"}

    async def test_mixed_name_and_phone(self, search: Search) -> None:
        body = await search(q="jo smith 415-555-0134")
        assert mrns(body) == ["A-100"]

    async def test_invalid_date_alone_matches_nothing(self, search: Search) -> None:
        body = await search(q="02/30/1975")
        assert body["items"] == []
        assert body["total"] == 0

    async def test_invalid_date_beside_a_name_does_not_hide_it(self, search: Search) -> None:
        # A date typed in the box is evidence, and an impossible one is none.
        assert mrns(await search(q="smith 02/30/1975")) == mrns(await search(q="smith"))


class TestFilters:
    async def test_explicit_filters(self, search: Search) -> None:
        assert mrns(await search(phone="415 555 0134")) == ["A-100"]
        assert mrns(await search(phone="0134")) == ["A-100"]
        assert set(mrns(await search(email="JSMITH@EXAMPLE.COM"))) == {"A-100", "A-107"}
        assert mrns(await search(email="jsmith@example.com", q="jane"))[0] == "A-107"
        assert set(mrns(await search(date_of_birth="1975-03-14"))) == {"A-100", "A-107"}
        assert mrns(await search(mrn="A-104")) == ["A-104"]

    async def test_status_filter_and_default(self, search: Search) -> None:
        assert mrns(await search(q="hamilton")) == ["A-108"]
        assert mrns(await search(q="hamilton", status="active")) == []
        assert mrns(await search(q="garcia", status="inactive")) == ["A-106"]

    async def test_archived_never_appear(
        self,
        client: httpx.AsyncClient,
        roster: tuple[dict[str, str], dict[str, str]],
        search: Search,
    ) -> None:
        headers, ids = roster
        assert (
            await client.delete(f"/v1/patients/{ids['A-104']}", headers=headers)
        ).status_code == 204
        for params in (
            {"q": "catherine zeta"},
            {"q": "zeta"},
            {"mrn": "A-104"},
            {"q": "A-104"},
            {"date_of_birth": "1969-09-25"},
        ):
            assert "A-104" not in mrns(await search(**params)), params

    async def test_updates_are_searchable_at_once(
        self,
        client: httpx.AsyncClient,
        roster: tuple[dict[str, str], dict[str, str]],
        search: Search,
    ) -> None:
        headers, ids = roster
        response = await client.patch(
            f"/v1/patients/{ids['A-104']}", json={"last_name": "Jones"}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = await search(q="catherine jones")
        assert mrns(body)[0] == "A-104"
        assert body["items"][0]["match"] == "exact"
        assert mrns(await search(q="zeta")) == []


class TestPaging:
    async def test_cursor_walks_without_duplicates_or_gaps(self, search: Search) -> None:
        everything = mrns(await search(q="s", limit=100))
        seen: list[str] = []
        body = await search(q="s", limit=2)
        while True:
            seen += mrns(body)
            if not body["next_cursor"]:
                break
            body = await search(q="s", limit=2, cursor=body["next_cursor"])
        assert seen == everything
        assert len(set(seen)) == len(seen)

    async def test_cursor_walks_a_multi_token_search(self, search: Search) -> None:
        everything = mrns(await search(q="jo smith", limit=100))
        first = await search(q="jo smith", limit=1)
        second = await search(q="jo smith", limit=1, cursor=first["next_cursor"])
        assert mrns(first) + mrns(second) == everything[:2]

    async def test_offset(self, search: Search) -> None:
        everything = mrns(await search(q="smith", limit=100))
        assert mrns(await search(q="smith", limit=2, offset=1)) == everything[1:3]

    async def test_tampered_cursor_is_400(self, search: Search) -> None:
        cursor = (await search(q="s", limit=1))["next_cursor"]
        raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        raw[3] ^= 1
        forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        for bad in (forged, "nonsense", "A" * 40):
            body = await search(expect=400, q="s", cursor=bad)
            assert "cursor" in body["detail"]

    async def test_cursor_of_another_query_or_clinic_is_400(
        self, client: httpx.AsyncClient, search: Search
    ) -> None:
        cursor = (await search(q="s", limit=1))["next_cursor"]
        await search(expect=400, q="smith", cursor=cursor)
        response = await client.get(
            "/v1/patients", params={"q": "s", "cursor": cursor}, headers=bearer(new_clinic_id())
        )
        assert response.status_code == 400

    async def test_totals(self, search: Search) -> None:
        body = await search(q="smith", limit=1)
        assert body["total"] >= 3
        assert body["total_exact"] is True


class TestBadInput:
    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"q": "   "},
            {"q": "x" * 201},
            {"q": "smith", "limit": 0},
            {"q": "smith", "limit": 101},
            {"q": "smith", "offset": 10_001},
            {"q": "smith", "offset": -1},
            {"q": "nul\x00byte"},
            {"phone": "12"},
            {"date_of_birth": "2023-02-30"},
            {"status": "archived", "q": "smith"},
            {"q": "smith", "cursor": "abc", "offset": 3},
            {"q": "smith", "unknown": "1"},
        ],
    )
    async def test_malformed_requests_are_400(self, search: Search, params: dict[str, Any]) -> None:
        body = await search(expect=400, **params)
        assert body["status"] == 400

    async def test_query_syntax_is_just_text(self, search: Search) -> None:
        for q in (
            "smith & john",
            "%",
            "_",
            "\\",
            "a | b",
            "!smith",
            "smith:*",
            "(john)",
            "'; DROP TABLE patients; --",
            ".*",
            "😀 smith",
            "סמית",
        ):
            await search(q=q)


class TestIsolation:
    async def test_another_clinic_finds_nothing(
        self, client: httpx.AsyncClient, roster: tuple[dict[str, str], dict[str, str]]
    ) -> None:
        intruder = bearer(new_clinic_id())
        for params in (
            {"q": "john smith"},
            {"q": "smith"},
            {"q": "4155550134"},
            {"q": "A-100"},
            {"mrn": "A-100"},
            {"email": "jsmith@example.com"},
            {"date_of_birth": "1975-03-14"},
            {"phone": "0134"},
            {"q": "s"},
        ):
            response = await client.get("/v1/patients", params=params, headers=intruder)
            assert response.status_code == 200
            assert response.json()["items"] == [], params

    async def test_search_needs_the_read_scope(
        self, client: httpx.AsyncClient, roster: tuple[dict[str, str], dict[str, str]]
    ) -> None:
        response = await client.get(
            "/v1/patients", params={"q": "smith"}, headers=bearer(new_clinic_id(), scopes="x")
        )
        assert response.status_code == 403
