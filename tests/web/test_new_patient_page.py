"""The New patient form in a real browser: live matches while typing, the duplicate check."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Request, Route, expect

from tests.factories import bearer
from tests.web.front_desk import AddPatients, open_new_patient_form

HOPPER = {
    "first_name": "Grace",
    "middle_name": "Brewster",
    "last_name": "Hopper",
    "date_of_birth": "1986-12-09",
    "mrn": "GH-1906",
}
WHITFIELDS = [
    {"first_name": "Keith", "last_name": "Whitfield", "date_of_birth": "1979-06-02"},
    {
        "first_name": "Katherine",
        "middle_name": "Ann",
        "last_name": "Whitfield",
        "date_of_birth": "1983-04-22",
        "mrn": "WF-1983",
    },
]


class PatientRequests:
    """Every request the page makes under /v1/patients: method, path, query and body."""

    def __init__(self, page: Page) -> None:
        self.seen: list[tuple[str, str, dict[str, list[str]], Any]] = []
        page.on("request", self._record)

    def _record(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.path.startswith("/v1/patients"):
            body = json.loads(request.post_data) if request.post_data else None
            self.seen.append((request.method, parts.path, parse_qs(parts.query), body))

    def to(self, path: str) -> list[tuple[dict[str, list[str]], Any]]:
        """The query and JSON body of each POST to `path`, in order."""
        return [
            (query, body)
            for method, seen, query, body in self.seen
            if seen == path and method == "POST"
        ]


async def _patients_with_mrn(api: httpx.AsyncClient, clinic: str, mrn: str) -> list[str]:
    response = await api.get("/v1/patients", params={"mrn": mrn}, headers=bearer(clinic))
    assert response.status_code == 200, response.text
    return [item["mrn"] for item in response.json()["items"]]


async def _settle(page: Page) -> None:
    """A bounded window in which a late answer or a debounced request would land."""
    await page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 600))")


async def test_a_registered_patients_name_and_date_of_birth_show_who_is_on_file(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(*WHITFIELDS)
    requests = PatientRequests(page)
    desk, form = await open_new_patient_form(page, clinic)
    await expect(desk.box).to_be_hidden()

    await form.fill(first_name="Katherine", last_name="Whitfield", date_of_birth="1983-04-22")

    first = form.match_items.first
    await expect(first.locator(".result-name")).to_have_text("Whitfield, Katherine Ann")
    await expect(first).to_contain_text("WF-1983")
    await expect(first).to_contain_text("Apr 22, 1983")
    await expect(first.locator(".grade")).to_have_text("certain")
    await expect(first.locator(".agreed")).to_have_text(
        "Agrees: first name exact, last name exact, DOB exact"
    )
    # Keith shares the surname only: listed below if at all, never as certain.
    await expect(form.match_items.locator(".grade")).not_to_have_text(["certain", "certain"])

    # The date typed with two digits swapped: still her, and the page says how it differs.
    await form.field("Date of birth").fill("1938-04-22")
    await expect(first.locator(".agreed")).to_have_text(
        "Agrees: first name exact, last name exact, DOB digits swapped"
    )
    await expect(first.locator(".result-name")).to_have_text("Whitfield, Katherine Ann")

    # Instead of registering, the clerk opens the patient on file.
    await first.get_by_role("button", name="Open profile").click()
    await expect(desk.panel_title).to_have_text("Whitfield, Katherine Ann")
    await expect(desk.panel.get_by_role("region", name="Patient")).to_contain_text("WF-1983")

    # Typing sent the person in POST bodies only; the URLs carry the limit and nothing else.
    matches = requests.to("/v1/patients/match")
    assert matches and all(query == {"limit": ["5"]} for query, _ in matches)
    assert matches[-1][1] == {
        "first_name": "Katherine",
        "last_name": "Whitfield",
        "date_of_birth": "1938-04-22",
    }
    assert urlsplit(page.url)[2:] == ("/", "", "")


async def test_saving_a_suspected_duplicate_warns_creates_nothing_until_create_anyway(
    page: Page, clinic: str, add_patients: AddPatients, api: httpx.AsyncClient
) -> None:
    await add_patients(HOPPER)
    requests = PatientRequests(page)
    desk, form = await open_new_patient_form(page, clinic)
    await form.fill(
        first_name="Grace", last_name="Hopper", date_of_birth="1986-12-09", mrn="GH-AGAIN"
    )
    await expect(form.match_items.first).to_contain_text("Hopper, Grace Brewster")

    await form.save.click()
    await expect(form.warning).to_be_visible()
    await expect(form.warning).to_contain_text("Nothing was saved")
    await expect(form.duplicates).to_have_count(1)
    await expect(form.duplicates.first.locator(".result-name")).to_have_text(
        "Hopper, Grace Brewster"
    )
    await expect(form.duplicates.first).to_contain_text("GH-1906")
    await expect(form.create_anyway).to_be_focused()
    assert await _patients_with_mrn(api, clinic, "GH-AGAIN") == []
    await expect(form.done).to_be_hidden()

    await form.create_anyway.click()
    await expect(form.done).to_have_text("Registered Hopper, Grace · MRN GH-AGAIN")
    await expect(form.warning).to_be_hidden()
    await expect(desk.panel_title).to_have_text("Hopper, Grace")
    await expect(desk.panel.get_by_role("region", name="Patient")).to_contain_text("GH-AGAIN")
    assert await _patients_with_mrn(api, clinic, "GH-AGAIN") == ["GH-AGAIN"]
    assert sorted(await _patients_with_mrn(api, clinic, "GH-1906")) == ["GH-1906"]

    # The same body twice: first without the override, then with it, and the form is cleared.
    creates = requests.to("/v1/patients")
    assert [query for query, _ in creates] == [{}, {"allow_duplicate": ["true"]}]
    assert creates[0][1] == creates[1][1]
    assert creates[0][1]["mrn"] == "GH-AGAIN"
    await expect(form.field("Last name")).to_have_value("")
    await expect(form.matches).to_be_hidden()


async def test_a_new_distinct_person_is_saved_at_once(
    page: Page, clinic: str, add_patients: AddPatients, api: httpx.AsyncClient
) -> None:
    await add_patients(HOPPER)
    requests = PatientRequests(page)
    desk, form = await open_new_patient_form(page, clinic)
    await form.fill(
        first_name="Ada",
        last_name="Lovelace",
        date_of_birth="1975-03-14",
        sex="female",
        mrn="AL-1815",
        phone="(415) 555-0134",
        email="ada@example.org",
        address_line="12 St James's Square",
        city="London",
        postal_code="SW1Y 4JH",
    )
    await expect(form.matches_status).to_have_text("No patient on file matches so far.")
    await expect(form.match_items).to_have_count(0)

    await form.save.click()
    await expect(form.done).to_have_text("Registered Lovelace, Ada · MRN AL-1815")
    await expect(desk.panel_title).to_have_text("Lovelace, Ada")
    contact = desk.panel.get_by_role("region", name="Contact", exact=True)
    await expect(contact).to_contain_text("(415) 555-0134")
    await expect(form.warning).to_be_hidden()
    await expect(form.error).to_be_hidden()
    assert await _patients_with_mrn(api, clinic, "AL-1815") == ["AL-1815"]
    assert requests.to("/v1/patients") == [
        (
            {},
            {
                "mrn": "AL-1815",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "date_of_birth": "1975-03-14",
                "sex": "female",
                "email": "ada@example.org",
                "phones": ["(415) 555-0134"],
                "address": {
                    "lines": ["12 St James's Square"],
                    "city": "London",
                    "postal_code": "SW1Y 4JH",
                },
            },
        )
    ]
    # Back to search: the new patient is found there.
    await page.get_by_role("button", name="Back to search").click()
    await desk.search("lovelace")
    await expect(desk.options.first).to_contain_text("AL-1815")


async def test_too_little_typed_asks_nothing_and_shows_no_matches_or_error(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(HOPPER)
    requests = PatientRequests(page)
    _, form = await open_new_patient_form(page, clinic)

    # A first name and a sex are not enough for /match (a last name, or a date of birth
    # with one other field, is): nothing is asked, nothing is shown.
    await form.fill(first_name="Grace", sex="female", mrn="GH-2", phone="415")
    await _settle(page)
    assert requests.to("/v1/patients/match") == []
    await expect(form.matches).to_be_hidden()
    await expect(page.get_by_text("Hopper")).to_have_count(0)
    await expect(form.error).to_be_hidden()
    await expect(page.get_by_role("alert")).to_have_count(0)

    # With the date of birth the same first name is enough, and she is on file.
    await form.fill(date_of_birth="1986-12-09")
    await expect(form.match_items.first).to_contain_text("Hopper, Grace Brewster")
    asked = requests.to("/v1/patients/match")
    assert [body for _, body in asked] == [
        {"first_name": "Grace", "date_of_birth": "1986-12-09", "sex": "female"}
    ]  # the half-typed phone and the MRN stay out


async def test_an_answer_for_an_older_body_never_shows(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(HOPPER)
    held = asyncio.Event()
    release = asyncio.Event()
    answered = asyncio.Event()

    async def hold_the_hopper_match(route: Route) -> None:
        if (route.request.post_data_json or {}).get("last_name") != "Hopper":
            await route.continue_()
            return
        held.set()
        older_answer = await route.fetch()  # Grace Hopper
        await release.wait()
        with contextlib.suppress(PlaywrightError):  # aborted by the page by now
            await route.fulfill(response=older_answer)
        answered.set()

    await page.route(lambda url: urlsplit(url).path == "/v1/patients/match", hold_the_hopper_match)
    _, form = await open_new_patient_form(page, clinic)
    await form.fill(last_name="Hopper")
    await asyncio.wait_for(held.wait(), timeout=10)

    # The clerk clears the name before the answer arrives: too little to ask about.
    await form.field("Last name").fill("")
    await expect(form.matches).to_be_hidden()
    release.set()
    await asyncio.wait_for(answered.wait(), timeout=10)
    await _settle(page)
    await expect(form.matches).to_be_hidden()
    await expect(page.get_by_text("Hopper, Grace Brewster")).to_have_count(0)
    await expect(page.get_by_role("alert")).to_have_count(0)


async def test_a_rejected_save_shows_the_problem_and_marks_the_field(
    page: Page, clinic: str, add_patients: AddPatients, api: httpx.AsyncClient
) -> None:
    await add_patients(HOPPER)
    _, form = await open_new_patient_form(page, clinic)
    await form.fill(first_name="Ada", last_name="Lovelace", mrn="GH-1906")
    await form.save.click()
    await expect(form.error).to_have_text(
        "Not saved: another patient in your clinic already has this MRN"
    )
    await expect(form.warning).to_be_hidden()

    await form.field("MRN").fill("")
    await expect(form.error).to_be_hidden()  # an edit clears the old problem
    await form.field("Last name").press("Enter")
    await expect(form.error).to_contain_text("Not saved: the request does not validate: body.mrn")
    await expect(form.field("MRN")).to_have_attribute("aria-invalid", "true")
    await expect(form.field("Last name")).not_to_have_attribute("aria-invalid", "true")
    assert await _patients_with_mrn(api, clinic, "GH-1906") == ["GH-1906"]
