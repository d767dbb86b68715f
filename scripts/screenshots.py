"""Screenshots of the front-desk page's main states, into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py      (or `make screenshots`)

Uses a database of its own (`patient_search_screenshots` on the configured server, created
for the run and dropped after it) filled by the synthetic generator: every name is fake.
The page is driven by Debian's chromium (`make browser` installs it).
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import uvicorn
from playwright.async_api import Page, async_playwright, expect
from psycopg import sql

from patient_search.app import create_app
from patient_search.auth.tokens import issue_token
from patient_search.cli import migrate, seed
from patient_search.seeding.generator import SyntheticPatient, generate_patients
from patient_search.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
DATABASE = "patient_search_screenshots"
CLINIC = "clinic-1"
PATIENTS = 3000
SEED = 7
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def log(message: str) -> None:
    sys.stderr.write(f"screenshots: {message}\n")


def recreate_database(settings: Settings, *, create: bool = True) -> Settings:
    """Drop (and create) the screenshot database; settings that point at it."""
    server = urlsplit(str(settings.database_url))
    with psycopg.connect(server._replace(path="/postgres").geturl(), autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    url = server._replace(path=f"/{DATABASE}").geturl()
    return settings.model_copy(update={"database_url": url, "env": "dev", "redis_url": ""})


def typo(word: str, rng: random.Random) -> str:
    """The word with two neighbouring letters swapped, the commonest slip at a keyboard."""
    at = rng.randrange(1, len(word) - 2)
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


class Server:
    """The app under uvicorn in a thread, on a port the OS picked."""

    def __init__(self, settings: Settings) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(settings), log_level="warning", access_log=False, ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


async def pick_patient(
    client: httpx.AsyncClient, token: str, candidates: list[SyntheticPatient]
) -> tuple[SyntheticPatient, str]:
    """A patient whose misspelt name still finds them first, and that misspelling."""
    rng = random.Random(SEED)
    headers = {"Authorization": f"Bearer {token}"}
    for patient in candidates:
        if len(patient.last_name) < 7 or not patient.last_name.isalpha():
            continue
        query = f"{patient.first_name.lower()} {typo(patient.last_name.lower(), rng)}"
        page = (await client.get("/v1/patients", params={"q": query}, headers=headers)).json()
        items = page["items"]
        if len(items) >= 4 and items[0]["mrn"] == patient.mrn and items[0]["match"] == "fuzzy":
            return patient, query
    raise RuntimeError("no generated patient suits the picture; change SEED")


async def add_profile_details(
    client: httpx.AsyncClient, token: str, patient_id: str, contact: SyntheticPatient
) -> None:
    """Emergency contact and insurance (the generator makes neither), from fake data."""
    response = await client.patch(
        f"/v1/patients/{patient_id}",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "emergency_contacts": [
                {
                    "name": f"{contact.first_name} {contact.last_name}",
                    "relationship": "sister",
                    "phone": contact.phones[0] if contact.phones else "617-555-0123",
                }
            ],
            "insurance": [
                {"payer": "Acme Health PPO", "member_id": "ACM-4417-0923"},
                {"payer": "Medicare Part B", "member_id": "1EG4-TE5-MK72"},
            ],
        },
    )
    response.raise_for_status()


async def shoot(page: Page, name: str) -> None:
    await page.screenshot(path=OUT / f"{name}.png")
    log(f"wrote docs/screenshots/{name}.png")


async def take(base_url: str, query: str, patient: SyntheticPatient) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(
            base_url=base_url,
            viewport={"width": 1280, "height": 800},
            locale="en-US",
            timezone_id="America/New_York",
        )
        page = await context.new_page()
        await page.goto("/")
        await expect(page.locator("#dev-form")).to_be_visible()
        await shoot(page, "sign-in")

        await page.get_by_role("button", name="Sign in to this clinic").click()
        box = page.get_by_role("combobox", name="Find a patient")
        await expect(box).to_be_focused()
        await shoot(page, "empty")

        await box.press_sequentially(query, delay=40)
        first = page.get_by_role("option").first
        await expect(first).to_contain_text(patient.mrn)
        await box.press("ArrowDown")
        await shoot(page, "results")

        await box.press("Enter")
        insurance = page.get_by_role("region", name="Insurance")
        await expect(insurance).to_be_visible()
        await shoot(page, "profile")

        await page.set_viewport_size({"width": 768, "height": 1024})
        await shoot(page, "tablet-profile")
        await page.keyboard.press("Escape")
        await page.set_viewport_size({"width": 1280, "height": 800})

        await box.fill("")
        await box.press_sequentially("qzxvwy", delay=40)
        await expect(page.locator("#notice-title")).to_contain_text("No patient matches")
        await shoot(page, "no-match")
        await browser.close()


async def stage_and_shoot(settings: Settings, generated: list[SyntheticPatient]) -> None:
    token = issue_token(settings.effective_jwt_secret, clinic_id=CLINIC, user_id="screenshots")
    with Server(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            patient, query = await pick_patient(client, token, generated)
            found = await client.get(
                "/v1/patients",
                params={"mrn": patient.mrn},
                headers={"Authorization": f"Bearer {token}"},
            )
            patient_id = found.json()["items"][0]["id"]
            await add_profile_details(client, token, patient_id, generated[-1])
        log(f"query {query!r} finds {patient.mrn} first")
        await take(server.url, query, patient)


def main() -> None:
    settings = recreate_database(Settings())
    try:
        migrate(settings)
        seed(settings, PATIENTS, 1, SEED, if_empty=False)
        generated = list(generate_patients(PATIENTS, seed=SEED * 1000 + 1, mrn_prefix="C1-"))
        asyncio.run(stage_and_shoot(settings, generated))
    finally:
        recreate_database(Settings(), create=False)


if __name__ == "__main__":
    main()
