"""The in-process slow-query alert: N slow statements in a window, rate-limited, no PHI."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from patient_search.app import create_app
from patient_search.observability.alerts import SlowQueryAlerts
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id, patient_body
from tests.observability.helpers import capture_logs


class Receiver:
    """A local HTTP server recording the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                self.send_response(status)
                self.end_headers()
                receiver.received.set()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _alerts(url: str, clock: FakeClock, **overrides: Any) -> SlowQueryAlerts:
    options: dict[str, Any] = {
        "slow_query_ms": 100,
        "threshold": 3,
        "window_s": 60,
        "min_interval_s": 300,
    }
    options.update(overrides)
    return SlowQueryAlerts(url, clock=clock, **options)


async def test_fires_once_past_the_threshold_then_rate_limits(receiver: Receiver) -> None:
    clock = FakeClock()
    alerts = _alerts(receiver.url, clock)
    alerts.observe("search.term_pages", 0.05, 1)  # fast: not counted
    alerts.observe("search.term_pages", 0.2, 1)
    alerts.observe("patient.get", 0.3, 1)
    assert alerts.sent == 0
    alerts.observe("search.term_pages", 0.4, 1)  # the third within 60 s
    await alerts.drain()
    assert alerts.sent == 1
    body = receiver.bodies[0]
    assert body["alert"] == "PatientSearchSlowQueries"
    assert body["slow_queries"] == 3
    assert body["queries"] == {"search.term_pages": 2, "patient.get": 1}
    assert receiver.headers[0]["Content-Type"] == "application/json"
    for _ in range(10):  # still bunched, but within the minimum interval
        clock.now += 1
        alerts.observe("patient.get", 0.5, 1)
    await alerts.drain()
    assert alerts.sent == 1
    clock.now += 300
    for _ in range(3):
        alerts.observe("patient.get", 0.5, 1)
    await alerts.drain()
    assert alerts.sent == 2


async def test_slow_queries_spread_over_more_than_the_window_do_not_fire(
    receiver: Receiver,
) -> None:
    clock = FakeClock()
    alerts = _alerts(receiver.url, clock)
    for _ in range(10):
        alerts.observe("search.term_pages", 0.2, 1)
        clock.now += 31  # two per minute, never three
    await alerts.drain()
    assert alerts.sent == 0
    assert receiver.bodies == []


async def test_a_failing_receiver_is_logged_not_raised() -> None:
    failing = Receiver(status=500)
    try:
        with capture_logs() as logs:
            alerts = _alerts(failing.url, FakeClock(), threshold=1)
            alerts.observe("patient.get", 1.0, 1)
            await alerts.drain()
        assert alerts.sent == 0
        assert logs.events("alert_webhook_failed")[0].error_type == "HTTPError"
    finally:
        failing.close()


def test_outside_an_event_loop_it_posts_from_a_thread(receiver: Receiver) -> None:
    alerts = _alerts(receiver.url, FakeClock(), threshold=1)
    alerts.observe("patient.get", 1.0, 1)
    assert receiver.received.wait(timeout=5)


async def test_the_service_posts_an_alert_without_patient_data(
    database_url: str, receiver: Receiver
) -> None:
    settings = make_settings(
        database_url,
        slow_query_ms=0,
        alert_webhook_url=receiver.url,
        alert_slow_query_threshold=5,
        alert_window_s=60,
        alert_min_interval_s=3600,
    )
    app = create_app(settings)
    headers = bearer(new_clinic_id())
    person = patient_body(
        first_name="Octavia",
        last_name="Wrenfield-Ames",
        mrn="MRN-WH-5521",
        date_of_birth="1985-12-10",
        phones=["(415) 555-0134"],
    )
    async with app.router.lifespan_context(app):
        async with asgi_client(app) as client:
            created = await client.post("/v1/patients", json=person, headers=headers)
            assert created.status_code == 201
            for _ in range(3):
                await client.get("/v1/patients", params={"q": "Wrenfield"}, headers=headers)
    # The lifespan waited for the delivery; only one alert despite many more slow queries.
    assert receiver.received.wait(timeout=5)
    await asyncio.sleep(0.05)
    assert len(receiver.bodies) == 1
    raw = json.dumps(receiver.bodies[0])
    for phi in ("Octavia", "Wrenfield", "MRN-WH-5521", "1985-12-10", "555-0134", "Lovelace"):
        assert phi.lower() not in raw.lower()
    assert receiver.bodies[0]["slow_queries"] == 5
    assert all("." in name for name in receiver.bodies[0]["queries"])  # repository names


def test_the_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        make_settings("postgresql://x@127.0.0.1/x", alert_webhook_url="file:///etc/passwd")
