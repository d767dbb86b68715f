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
