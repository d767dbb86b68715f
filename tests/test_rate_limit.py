"""Per-user search rate limiting: the bucket, the 429, and Redis shared or away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from patient_search.errors import RateLimited
from patient_search.rate_limit import LocalBuckets, RateLimiter
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id
from tests.private_servers import PrivateRedis, free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestLocalBuckets:
    def test_a_burst_passes_then_one_per_interval(self) -> None:
        clock = FakeClock()
        buckets = LocalBuckets(clock)
        # 60/min, burst 3: interval 1 s, tolerance 2 s.
        assert [buckets.take("u", 1.0, 2.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert buckets.take("u", 1.0, 2.0) == pytest.approx(1.0)
        clock.now += 0.5
        assert buckets.take("u", 1.0, 2.0) == pytest.approx(0.5)
        clock.now += 0.5
        assert buckets.take("u", 1.0, 2.0) == 0.0
        assert buckets.take("v", 1.0, 2.0) == 0.0  # someone else's bucket is full

    def test_a_refused_request_costs_nothing(self) -> None:
        clock = FakeClock()
        buckets = LocalBuckets(clock)
        buckets.take("u", 1.0, 0.0)
        for _ in range(100):
            assert buckets.take("u", 1.0, 0.0) > 0
        clock.now += 1.0
        assert buckets.take("u", 1.0, 0.0) == 0.0


@pytest.fixture
async def limited_app(database_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, search_rate_per_minute=60, search_rate_burst=3))
    async with app.router.lifespan_context(app):
        yield app


async def test_search_over_the_limit_is_429_with_retry_after(limited_app: FastAPI) -> None:
    async with asgi_client(limited_app) as client:
        clinic = new_clinic_id()
        alice = bearer(clinic, user="alice")
        statuses = [
            (await client.get("/v1/patients", params={"q": "smith"}, headers=alice)).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        refused = await client.get("/v1/patients", params={"q": "smith"}, headers=alice)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 429
        # Per user and clinic: a colleague, or the same name in another clinic, is unaffected.
        for other in (bearer(clinic, user="bob"), bearer(new_clinic_id(), user="alice")):
            ok = await client.get("/v1/patients", params={"q": "smith"}, headers=other)
            assert ok.status_code == 200
        # Only search is limited; a missing token is still a 401, not a 429.
        assert (await client.get("/v1/patients", params={"q": "smith"})).status_code == 401


def test_the_429_is_documented() -> None:
    app = create_app(make_settings("postgresql://postgres@127.0.0.1:1/none"))
    responses = app.openapi()["paths"]["/v1/patients"]["get"]["responses"]
    assert "429" in responses


async def test_no_limit_when_rate_is_zero() -> None:
    limiter = RateLimiter(0, 1)
    for _ in range(1000):
        await limiter.check("c", "u")


async def test_workers_share_a_bucket_in_redis_and_fall_back_to_their_own_without_it() -> None:
    server = PrivateRedis(free_port())
    server.start()
    workers = [
        RateLimiter(60, 4, redis_url=server.url, redis_timeout_s=0.05, cooldown_s=0.2)
        for _ in range(2)
    ]
    try:
        allowed = 0
        for n in range(8):
            try:
                await workers[n % 2].check("c-1", "alice")
                allowed += 1
            except RateLimited as refused:
                assert refused.headers["Retry-After"] == "1"
        assert allowed == 4  # one bucket across both workers
        assert all(worker.shared for worker in workers)
        # A rate so high its interval rounds to 0 µs still stores a bucket (PX >= 1 ms).
        fast = RateLimiter(10**9, 10, redis_url=server.url)
        await fast.check("c-1", "bob")
        assert fast.shared
        await fast.close()
        server.stop()
        # Redis away: each worker limits on its own (never fails open, never fails the search).
        for worker in workers:
            outcomes = []
            for _ in range(6):
                try:
                    await worker.check("c-1", "alice")
                    outcomes.append("ok")
                except RateLimited:
                    outcomes.append("429")
            assert outcomes == ["ok"] * 4 + ["429"] * 2
            assert not worker.shared
    finally:
        server.stop()
        for worker in workers:
            await worker.close()
