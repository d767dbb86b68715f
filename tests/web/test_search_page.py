"""The front-desk page in a real browser: search as you type, keyboard, panel, states."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Route, expect

from tests.web.front_desk import AddPatients, FrontDesk

WHITFIELDS = [
    {"first_name": "Keith", "last_name": "Whitfield", "date_of_birth": "1979-06-02"},
    {"first_name": "Kathryn", "last_name": "Whitman", "date_of_birth": "1990-01-15"},
    {
        "first_name": "Katherine",
        "middle_name": "Ann",
        "last_name": "Whitfield",
        "date_of_birth": "1983-04-22",
        "mrn": "WF-1983",
    },
    {"first_name": "Catherine", "last_name": "Whitford", "date_of_birth": "1971-11-30"},
    {"first_name": "Kate", "last_name": "Field", "date_of_birth": "2001-08-09"},
]


TIMED_COUNT = re.compile(r"^\d+ patients? · [\d.]+ ms \(server [\d.]+ ms\)$")


def _search_query(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.path != "/v1/patients":
        return None
    return parse_qs(parts.query).get("q", [None])[0]


async def test_a_misspelled_name_typed_letter_by_letter_finds_the_patient_first(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(*WHITFIELDS)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await expect(desk.box).to_be_focused()

    await desk.search("katherine whitfirld")

    first = desk.options.first
    await expect(first.locator(".result-name")).to_have_text("Whitfield, Katherine Ann")
    await expect(first).to_contain_text("WF-1983")
    await expect(first).to_contain_text("Apr 22, 1983")
    await expect(first.locator(".rung")).to_have_text("matched by typo")
    # The typed first name is marked, and the surname the typo stands for, whole.
    await expect(first.locator("mark")).to_have_text(["Whitfield", "Katherine"])
    await expect(desk.status).to_have_text(TIMED_COUNT)
    # Nothing the user typed, and no token, ever reaches the address bar.
    assert urlsplit(page.url)[2:] == ("/", "", "")


async def test_a_nickname_match_marks_the_given_name_it_stands_for(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(
        {"first_name": "William", "middle_name": "Henry", "last_name": "Turner"},
        {"first_name": "Wilma", "middle_name": None, "last_name": "Fowler"},
    )
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("bill turner")
    first = desk.options.first
    await expect(first.locator(".result-name")).to_have_text("Turner, William Henry")
    await expect(first.locator(".rung")).to_have_text("matched by nickname")
    await expect(first.locator("mark")).to_have_text(["Turner", "William"])


async def test_a_date_of_birth_or_a_phone_finds_and_marks_the_patient(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(
        {"first_name": "Ada", "date_of_birth": "1975-03-14", "phones": ["(415) 555-0134"]},
        {"first_name": "Bea", "date_of_birth": "1980-01-02", "phones": ["(212) 555-0100"]},
    )
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("3/14/1975")
    await expect(desk.options).to_have_count(1)
    today = dt.datetime.now(dt.UTC).date()  # the browser's clock runs in UTC too
    age = today.year - 1975 - ((today.month, today.day) < (3, 14))
    await expect(desk.options.first.locator("mark")).to_have_text([f"Mar 14, 1975 ({age} y)"])

    await desk.box.fill("")
    await desk.search("415-555-0134")
    await expect(desk.options).to_have_count(1)
    await expect(desk.options.first.locator(".rung")).to_have_text("matched by phone")
    await expect(desk.options.first.locator("mark")).to_have_text(["(415) 555-0134"])


LOVELACES = [
    {"first_name": first, "middle_name": None, "last_name": "Lovelace", "mrn": mrn}
    for first, mrn in (("Ada", "L-1"), ("Byron", "L-2"), ("Claire", "L-3"))
]


async def test_arrow_keys_move_enter_opens_escape_closes_then_clears(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(*LOVELACES)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("lovelace")
    await expect(desk.options).to_have_count(3)
    names = await desk.options.locator(".result-name").all_inner_texts()

    await desk.box.press("ArrowDown")
    await expect(desk.options.nth(0)).to_have_attribute("aria-selected", "true")
    await desk.box.press("ArrowDown")
    await desk.box.press("ArrowDown")
    await desk.box.press("ArrowDown")  # stays on the last one
    await expect(desk.options.nth(2)).to_have_attribute("aria-selected", "true")
    await desk.box.press("ArrowUp")
    second = desk.options.nth(1)
    await expect(second).to_have_attribute("aria-selected", "true")
    await expect(desk.box).to_have_attribute("aria-activedescendant", "result-1")
    await expect(desk.options.nth(0)).to_have_attribute("aria-selected", "false")

    await desk.box.press("Enter")
    await expect(desk.panel).to_be_visible()
    await expect(desk.panel_title).to_have_text(names[1])
    await expect(desk.panel_title).to_be_focused()

    await page.keyboard.press("Escape")
    await expect(desk.panel).to_be_hidden()
    await expect(desk.box).to_be_focused()
    await expect(desk.box).to_have_value("lovelace")
    await expect(second).to_have_attribute("aria-selected", "true")

    await desk.box.press("Escape")
    await expect(desk.box).to_have_value("")
    await expect(desk.options).to_have_count(0)
    await expect(desk.notice_title).to_have_text("Start typing to find a patient")


async def test_enter_right_after_typing_opens_the_first_hit_of_that_query(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(*LOVELACES)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.box.fill("byron lovelace")  # no pause: Enter lands inside the debounce
    await desk.box.press("Enter")
    await expect(desk.panel_title).to_have_text("Lovelace, Byron")


async def test_the_panel_shows_contacts_emergency_contacts_and_insurance(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(
        {
            "first_name": "Grace",
            "middle_name": "Brewster",
            "last_name": "Hopper",
            "date_of_birth": "1986-12-09",
            "sex": "female",
            "mrn": "GH-1906",
            "phones": ["(212) 555-0142", "+44 20 7946 0958"],
            "email": "grace.hopper@example.org",
            "emergency_contacts": [
                {"name": "Vincent Hopper", "relationship": "spouse", "phone": "212-555-0188"}
            ],
            "insurance": [
                {"payer": "Navy Mutual", "member_id": "NM-0042"},
                {"payer": "Acme Health", "member_id": "AC-7"},
            ],
        }
    )
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("hopper grace")
    await desk.options.first.click()

    panel = desk.panel
    await expect(desk.panel_title).to_have_text("Hopper, Grace Brewster")
    patient = panel.get_by_role("region", name="Patient")
    await expect(patient).to_contain_text("Dec 9, 1986")
    await expect(patient).to_contain_text("female")
    await expect(patient).to_contain_text("GH-1906")
    contact = panel.get_by_role("region", name="Contact", exact=True)
    await expect(contact.get_by_role("listitem")).to_have_text(["(212) 555-0142", "+442079460958"])
    await expect(contact).to_contain_text("grace.hopper@example.org")
    emergency = panel.get_by_role("region", name="Emergency contacts")
    await expect(emergency.get_by_role("listitem")).to_have_count(1)
    await expect(emergency).to_contain_text("Vincent Hopper")
    await expect(emergency).to_contain_text("spouse · (212) 555-0188")
    insurance = panel.get_by_role("region", name="Insurance").get_by_role("listitem")
    await expect(insurance).to_have_count(2)
    await expect(insurance.nth(0)).to_contain_text("Navy Mutual")
    await expect(insurance.nth(0)).to_contain_text("Member ID NM-0042")
    await expect(insurance.nth(1)).to_contain_text("Acme Health")

    await panel.get_by_role("button", name="Close the patient panel").click()
    await expect(panel).to_be_hidden()
    await expect(desk.box).to_be_focused()


async def test_no_match_says_so_and_suggests_what_to_try(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(*LOVELACES)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("qzxvwy")
    await expect(desk.notice).to_be_visible()
    await expect(desk.notice_title).to_have_text(
        "No patient matches — check spelling or search by date of birth."
    )
    await expect(desk.options).to_have_count(0)
    await expect(desk.box).to_have_attribute("aria-expanded", "false")


async def test_an_older_answer_arriving_late_never_replaces_the_newer_one(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(
        {"first_name": "Mary", "last_name": "Sanders", "mrn": "OLD-1"},
        {"first_name": "Marco", "last_name": "Polo", "mrn": "NEW-1"},
    )
    held = asyncio.Event()
    release = asyncio.Event()
    answered = asyncio.Event()

    async def hold_the_first_search(route: Route) -> None:
        if _search_query(route.request.url) != "mar":
            await route.continue_()
            return
        held.set()
        older_answer = await route.fetch()  # Mary Sanders and Marco Polo
        await release.wait()
        # The page has aborted this request by now; if it had not, the answer arrives here.
        with contextlib.suppress(PlaywrightError):
            await route.fulfill(response=older_answer)
        answered.set()

    await page.route(lambda url: urlsplit(url).path == "/v1/patients", hold_the_first_search)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.type("mar")
    await asyncio.wait_for(held.wait(), timeout=10)
    await expect(desk.status).to_have_text("Searching…")  # the loading state

    await desk.search("co polo")
    await expect(desk.options).to_have_count(1)
    await expect(desk.options.first).to_contain_text("NEW-1")

    release.set()
    await asyncio.wait_for(answered.wait(), timeout=10)
    # Give a late answer every chance to land (a bounded window for a negative check).
    await page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 300))")
    await expect(desk.options).to_have_count(1)
    await expect(desk.options.first).to_contain_text("NEW-1")
    await expect(page.get_by_text("OLD-1")).to_have_count(0)


async def test_a_failed_search_shows_the_error_and_can_be_retried(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(*LOVELACES)
    failing = True

    async def unavailable_once(route: Route) -> None:
        if failing:
            await route.fulfill(
                status=503,
                content_type="application/problem+json",
                body='{"status": 503, "title": "Service unavailable", "detail": "retry shortly"}',
                headers={"Retry-After": "1"},
            )
        else:
            await route.continue_()

    await page.route(lambda url: urlsplit(url).path == "/v1/patients", unavailable_once)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("ada lovelace")
    await expect(desk.notice_title).to_have_text("The service is busy")
    retry = page.get_by_role("button", name="Try again")
    await expect(retry).to_be_visible()

    failing = False
    await retry.click()
    await expect(desk.options.first).to_contain_text("Lovelace, Ada")
    await expect(desk.notice).to_be_hidden()
    await expect(desk.box).to_be_focused()


async def test_a_rejected_token_returns_to_sign_in(page: Page, clinic: str) -> None:
    async def expired(route: Route) -> None:
        await route.fulfill(
            status=401,
            content_type="application/problem+json",
            body='{"status": 401, "title": "Not authenticated", "detail": "expired"}',
        )

    await page.route(lambda url: urlsplit(url).path == "/v1/patients", expired)
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.type("ada")
    await expect(page.get_by_role("alert")).to_have_text("Your session has ended — sign in again.")
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_a_mistyped_date_of_birth_still_finds_the_patient_and_says_it_differs(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(
        {
            "first_name": "Mya",
            "middle_name": None,
            "last_name": "McCarthy",
            "date_of_birth": "1967-05-09",
        },
        {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1967-05-09"},
    )
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("mya mccarthy 1976-05-09")
    first = desk.options.first
    await expect(first.locator(".result-name")).to_have_text("McCarthy, Mya")
    await expect(first.locator(".rung")).to_have_text("matched by DOB near")
    await expect(first.locator(".dob-differs")).to_have_text(" · DOB digits swapped")
    # The name parts come marked from the server's highlights; the date is not marked.
    await expect(first.locator("mark")).to_have_text(["McCarthy", "Mya"])
