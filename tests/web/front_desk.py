"""The front-desk page as the tests see it: its parts by role and label, and sign-in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Locator, Page, expect

from tests.factories import bearer

# add_patients(*fields): creates them in the test's clinic; their JSON, in order.
AddPatients = Callable[..., Awaitable[list[dict[str, Any]]]]


def token_for(clinic: str) -> str:
    """A read/write bearer token for the clinic, as staff would paste it."""
    return bearer(clinic)["Authorization"].removeprefix("Bearer ")


class FrontDesk:
    """One tab of the search page."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.box: Locator = page.get_by_role("combobox", name="Find a patient")
        self.results: Locator = page.get_by_role("listbox", name="Matching patients")
        self.options: Locator = self.results.get_by_role("option")
        self.status: Locator = page.get_by_role("status").first
        self.notice: Locator = page.locator("#notice")
        self.notice_title: Locator = page.locator("#notice-title")
        self.panel: Locator = page.get_by_role("complementary")
        self.panel_title: Locator = self.panel.get_by_role("heading", level=2)

    async def sign_in(self, clinic: str) -> str:
        """Open the page and paste a token (works outside ENV=dev too); the token."""
        token = token_for(clinic)
        await self.page.goto("/")
        await self.page.get_by_label("Bearer token").fill(token)
        await self.page.get_by_role("button", name="Use this token").click()
        return token

    async def type(self, text: str) -> None:
        """Type into the box key by key, like a person (the box is focused after sign-in)."""
        await self.box.press_sequentially(text, delay=35)

    async def search(self, text: str) -> None:
        """Type, then wait until the answer to the whole text is on screen."""
        await self.type(text)
        await expect(self.results).to_have_attribute("aria-busy", "false")


class NewPatientForm:
    """The New patient form of the page, and who on file it says may be this person."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.open_button: Locator = page.get_by_role("button", name="New patient")
        self.section: Locator = page.get_by_role("region", name="New patient")
        self.matches: Locator = page.get_by_role("region", name="Is this the patient?")
        self.match_items: Locator = self.matches.get_by_role("listitem")
        self.matches_status: Locator = page.locator("#matches-status")
        self.save: Locator = page.get_by_role("button", name="Save")
        self.warning: Locator = page.get_by_role(
            "alert", name="This patient may already be registered"
        )
        self.duplicates: Locator = self.warning.get_by_role("listitem")
        self.create_anyway: Locator = page.get_by_role("button", name="Create anyway")
        self.error: Locator = page.locator("#register-error")
        self.done: Locator = page.locator("#register-done")

    def field(self, label: str) -> Locator:
        return self.section.get_by_label(label, exact=True)

    async def open(self) -> None:
        await self.open_button.click()
        await expect(self.field("First name")).to_be_focused()

    async def type(self, label: str, text: str) -> None:
        """Type into a field key by key, like a clerk."""
        await self.field(label).press_sequentially(text, delay=20)

    async def fill(self, **fields: str) -> None:
        """Type each field given by its label's words (first_name="Ada", date_of_birth=...)."""
        for name, text in fields.items():
            label = FORM_LABELS[name]
            if name == "date_of_birth":
                await self.field(label).fill(text)  # a date input takes ISO, whatever the locale
            elif name == "sex":
                await self.field(label).select_option(text)
            else:
                await self.type(label, text)


FORM_LABELS = {
    "first_name": "First name",
    "middle_name": "Middle name",
    "last_name": "Last name",
    "date_of_birth": "Date of birth",
    "sex": "Sex",
    "mrn": "MRN",
    "phone": "Phone",
    "email": "Email",
    "address_line": "Address",
    "city": "City",
    "postal_code": "Postal code",
}


async def open_new_patient_form(page: Page, clinic: str) -> tuple[FrontDesk, NewPatientForm]:
    """Signed in to the clinic, with the New patient form open."""
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    form = NewPatientForm(page)
    await form.open()
    return desk, form
