"""A real server on a free port and a real browser (Debian's chromium) driving the page.

The server runs in a thread of this process, so coverage sees the page's routes; the
browser is launched once per session and every test gets a fresh context (its own
sessionStorage), a fresh clinic and its own patients.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, async_playwright

from patient_search.app import create_app
from patient_search.settings import Settings
from tests.factories import bearer, patient_body
from tests.web.front_desk import AddPatients

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


class LiveServer:
    """The app under uvicorn in a background thread, on a port the OS picked."""

    def __init__(self, settings: Settings) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(settings),
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="none",
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()


# Package scope, not session: a server thread left running would keep publishing its own
# pool and loop gauges into the process-wide metrics that later tests read.
@pytest.fixture(scope="package")
def live_server(settings: Settings) -> Iterator[str]:
    """The base URL of a running server (ENV=dev, the test secret, the test database)."""
    server = LiveServer(settings)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, live_server: str) -> AsyncIterator[Page]:
    """A fresh browser tab at 1280 px; fails the test on a CSP violation or a script error."""
    context = await browser.new_context(
        base_url=live_server, viewport=DESKTOP, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(10_000)
    tab = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        yield tab
    finally:
        await context.close()
    assert problems == []


@pytest.fixture
async def api(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the live server (seeding, header checks)."""
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as client:
        yield client


@pytest.fixture
def add_patients(api: httpx.AsyncClient, clinic: str) -> AddPatients:
    """Create patients in the test's clinic through the API; their JSON, in order."""

    async def add(*patients: dict[str, Any]) -> list[dict[str, Any]]:
        created = []
        for fields in patients:
            # Rosters of look-alikes on purpose: register past the duplicate check.
            response = await api.post(
                "/v1/patients",
                json=patient_body(**fields),
                headers=bearer(clinic),
                params={"allow_duplicate": "true"},
            )
            assert response.status_code == 201, response.text
            created.append(response.json())
        return created

    return add
