"""Redis killed under load: no request fails, the database serves, caching resumes after."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable

import httpx
import redis

from patient_search.app import create_app
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id, patient_body
from tests.faults.conftest import report
from tests.faults.load import Load, Outcome, median_ms, percentile_ms
from tests.instruments import CountingObserver
from tests.private_servers import PrivateRedis

PATIENTS = 8


def kind(outcomes: list[Outcome], name: str) -> list[Outcome]:
    return [o for o in outcomes if o.kind == name]


async def test_redis_killed_and_restarted_under_load(
    database_url: str, private_redis: PrivateRedis
) -> None:
    # A killed Redis refuses connections at once, so the timeout is not what detects it; a
    # generous one keeps a loaded CI machine's slow replies from reopening the breaker after
    # the restart, which would read as "caching did not resume".
    settings = make_settings(
        database_url,
        redis_url=private_redis.url,
        search_rate_per_minute=0,
        db_pool_max=8,
        redis_timeout_ms=1000,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state = app.state.services
        state.query_observer = observer = CountingObserver(state.query_observer)
        async with asgi_client(app) as client:
            headers = bearer(new_clinic_id())
            ids = []
            for n in range(PATIENTS):
                body = patient_body(last_name=f"Cachekill{n}")
                created = await client.post("/v1/patients", json=body, headers=headers)
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])

            def request(n: int) -> tuple[str, Awaitable[httpx.Response]]:
                if n % 4 == 3:
                    query = {"q": f"cachekill{n % PATIENTS}"}
                    return "search", client.get("/v1/patients", params=query, headers=headers)
                return "view", client.get(f"/v1/patients/{ids[n % PATIENTS]}", headers=headers)

            async def database_reads_during(seconds: float) -> int:
                before = observer.counts["patient.get"] + observer.counts["search.summaries"]
                await asyncio.sleep(seconds)
                now = observer.counts["patient.get"] + observer.counts["search.summaries"]
                return now - before

            load = Load(request, clients=6)
            load.start()
            await asyncio.sleep(1.0)
            reads_up = await database_reads_during(1.0)

            killed = time.monotonic()
            private_redis.stop()  # SIGKILL
            await asyncio.sleep(0.3)
            reads_down = await database_reads_during(1.0)
            ready_down = await client.get("/readyz")

            restarted = time.monotonic()
            await asyncio.to_thread(private_redis.start)  # same port, empty
            resumed = None
            with redis.Redis(port=private_redis.port) as probe:
                while time.monotonic() - restarted < 10:
                    if probe.dbsize() > 0:  # the service is filling the cache again
                        resumed = time.monotonic() - restarted
                        break
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            reads_after = await database_reads_during(1.0)
            outcomes = await load.stop()
            ready_after = await client.get("/readyz")

    up = [o for o in outcomes if o.finished < killed]
    down = [o for o in outcomes if killed <= o.started and o.finished < restarted]
    after = [o for o in outcomes if o.started > restarted + (resumed or 0) + 1.0]
    failed = [o for o in outcomes if o.status != 200]
    assert not failed, Counter(o.status for o in failed)
    assert up and down and after
    # Down: every request went to the database, at database speed (no timeout per request).
    assert reads_down > 20 and reads_up < reads_down / 10
    assert percentile_ms(down, 0.95) < 1000
    assert ready_down.status_code == 200 and ready_down.json()["cache"] == "unavailable"
    # Restarted: the cache fills and serves again, without restarting the service.
    assert resumed is not None and resumed < 5
    assert reads_after < reads_down / 5
    assert ready_after.status_code == 200 and ready_after.json()["cache"] == "redis"
    report(
        f"redis killed (SIGKILL) and restarted: 1 fault; {len(outcomes)} requests, "
        f"{len(failed)} failed; 6 clients, p50 {median_ms(up):.1f} ms with Redis, "
        f"{median_ms(down):.1f} ms without (views {median_ms(kind(down, 'view')):.1f}, searches "
        f"{median_ms(kind(down, 'search')):.1f}; p95 {percentile_ms(down, 0.95):.1f} ms); "
        f"database reads/s {reads_up} up, "
        f"{reads_down} down, {reads_after} after; cache filling again "
        f"{resumed:.2f} s after Redis restarted"
    )
