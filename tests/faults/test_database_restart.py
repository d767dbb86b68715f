"""PostgreSQL restarted under load: fast 503s while it is away, recovery on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import httpx
import pytest

from patient_search.app import create_app
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id, patient_body
from tests.faults.conftest import PrivatePostgres, report
from tests.faults.load import Load, percentile_ms

# The contract: back within 5 s of PostgreSQL's return, without restarting the service.
RECOVERY_BOUND_S = 5.0


# fast: a clean shutdown that disconnects every session; immediate: a crash (recovery at start).
@pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
async def test_requests_fail_fast_while_postgres_is_down_and_recover_after(
    private_postgres: PrivatePostgres, stop_mode: str
) -> None:
    # No cache: every request needs the database, as a cold cache or a write would.
    settings = make_settings(
        private_postgres.url(), cache_enabled=False, db_pool_min=2, db_pool_max=8
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with asgi_client(app) as client:
            headers = bearer(new_clinic_id())
            ids = []
            for n in range(5):
                created = await client.post(
                    "/v1/patients", json=patient_body(last_name=f"Restart{n}"), headers=headers
                )
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])

            def request(n: int) -> tuple[str, Awaitable[httpx.Response]]:
                patient = f"/v1/patients/{ids[n % len(ids)]}"
                if n % 5 == 0:
                    return "write", client.patch(
                        patient, json={"status": "active"}, headers=headers
                    )
                if n % 5 == 1:
                    query = {"q": f"restart{n % len(ids)}"}
                    return "search", client.get("/v1/patients", params=query, headers=headers)
                return "view", client.get(patient, headers=headers)

            load = Load(request, clients=6)
            load.start()
            await asyncio.sleep(1.0)

            stopping = time.monotonic()
            await asyncio.to_thread(private_postgres.stop, stop_mode)
            await asyncio.sleep(0.5)
            asked = time.monotonic()
            not_ready = await client.get("/readyz")
            not_ready_s = time.monotonic() - asked
            await asyncio.sleep(1.5)

            await asyncio.to_thread(private_postgres.start)
            back = time.monotonic()
            recovered = None
            while time.monotonic() - back < RECOVERY_BOUND_S + 5:
                answered = [o for o in load.between(back, float("inf")) if o.status < 500]
                if answered:
                    recovered = min(o.finished for o in answered) - back
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            steady_from = time.monotonic() - 0.5
            outcomes = await load.stop()
            ready = await client.get("/readyz")

    # Those in flight when the server stopped belong to the outage.
    before = [o for o in outcomes if o.finished < stopping]
    outage = [o for o in outcomes if o.finished >= stopping and o.started < back]
    failed = [o for o in outcomes if o.status >= 500 or o.status == 0]
    assert before and outage
    assert all(o.status < 500 for o in before), [o for o in before if o.status >= 500]
    # Down: 503 with Retry-After, quickly; nothing else fails, nothing waits the 30 s timeout.
    assert all(o.status == 503 and o.retry_after for o in failed), {o.status for o in failed}
    assert max(o.seconds for o in outage) < 2.0
    assert not_ready.status_code == 503
    assert not_ready.json()["database"] == "unavailable"
    assert not_ready_s < 1.0
    # Back: within the bound, then steadily fine, and /readyz says so.
    assert recovered is not None and recovered <= RECOVERY_BOUND_S
    assert all(o.status < 500 for o in load.between(steady_from, float("inf")))
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    report(
        f"postgres restart: 1 fault (pg_ctl stop -m {stop_mode}, down {back - stopping:.1f} s); "
        f"{len(outcomes)} requests, {len(failed)} failed (all 503 + Retry-After, during the "
        f"outage), 0 other errors; outage answers p50 {percentile_ms(outage, 0.5):.1f} ms, "
        f"max {1000 * max(o.seconds for o in outage):.0f} ms; /readyz 503 in "
        f"{1000 * not_ready_s:.0f} ms; first success {recovered:.2f} s after PostgreSQL "
        "accepted connections"
    )
