"""Every metric family exists and moves as the service works (single-process mode)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from patient_search.app import create_app
from patient_search.observability import metrics
from patient_search.observability.metrics import (
    QueryMetrics,
    record_cache,
    record_cache_rejected,
    record_journal_rejected,
)
from patient_search.observability.samplers import RuntimeSampler
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id
from tests.observability.helpers import free_port, sample, scraped

REQUESTS = "patient_search_http_request_duration_seconds"
QUERIES = "patient_search_db_query_duration_seconds"
SLOW = "patient_search_slow_queries_total"


@pytest.fixture
async def slow_app(database_url: str) -> AsyncIterator[FastAPI]:
    """An app that counts every statement as slow."""
    app = create_app(make_settings(database_url, slow_query_ms=0))
    async with app.router.lifespan_context(app):
        yield app


async def test_metrics_endpoint_serves_the_text_format(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for family in (REQUESTS, QUERIES, "patient_search_cache_requests_total", "process_open_fds"):
        assert f"# TYPE {family} " in response.text
    again = (await client.get("/metrics")).text
    assert scraped(again, f"{REQUESTS}_count", method="GET", route="/metrics", status="200")


async def test_request_histogram_is_labelled_by_route_template(
    client: httpx.AsyncClient,
) -> None:
    patient_id = str(uuid.uuid4())
    labels = {"method": "GET", "route": "/v1/patients/{patient_id}", "status": "404"}
    before = sample(f"{REQUESTS}_count", **labels)
    response = await client.get(f"/v1/patients/{patient_id}", headers=bearer(new_clinic_id()))
    assert response.status_code == 404
    assert sample(f"{REQUESTS}_count", **labels) == before + 1
    assert sample(f"{REQUESTS}_sum", **labels) > 0
    text = (await client.get("/metrics")).text
    assert scraped(text, f"{REQUESTS}_count", **labels) == before + 1
    assert patient_id not in text


async def test_unmatched_paths_and_odd_methods_get_constant_labels(
    client: httpx.AsyncClient,
) -> None:
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    before = sample(f"{REQUESTS}_count", **unmatched)
    secret_path = f"/nope/{uuid.uuid4()}"
    await client.get(secret_path)
    assert sample(f"{REQUESTS}_count", **unmatched) == before + 1
    odd = {"method": "other", "route": "/healthz", "status": "405"}
    before_odd = sample(f"{REQUESTS}_count", **odd)
    await client.request("BREW", "/healthz")
    assert sample(f"{REQUESTS}_count", **odd) == before_odd + 1
    text = (await client.get("/metrics")).text
    assert secret_path not in text
    assert "BREW" not in text


async def test_query_histogram_and_slow_counter_move_per_query_name(slow_app: FastAPI) -> None:
    before_count = sample(f"{QUERIES}_count", query="patient.get")
    before_slow = sample(SLOW, query="patient.get")
    async with asgi_client(slow_app) as client:
        response = await client.get(f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id()))
        assert response.status_code == 404
        text = (await client.get("/metrics")).text
    assert sample(f"{QUERIES}_count", query="patient.get") == before_count + 1
    assert sample(SLOW, query="patient.get") == before_slow + 1
    assert scraped(text, SLOW, query="patient.get") == before_slow + 1


def test_slow_counter_respects_the_threshold() -> None:
    observer = QueryMetrics(slow_query_ms=50)
    name = f"test.threshold_{uuid.uuid4().hex[:8]}"
    observer.observe(name, 0.010, 1)
    assert sample(f"{QUERIES}_count", query=name) == 1
    assert sample(SLOW, query=name) == 0
    observer.observe(name, 0.060, 1)
    assert sample(SLOW, query=name) == 1
    # 10 ms and 60 ms land in different buckets.
    assert sample(f"{QUERIES}_bucket", query=name, le="0.02") == 1
    assert sample(f"{QUERIES}_bucket", query=name, le="0.1") == 2


async def test_cache_series_exist_at_zero_and_count_lookups(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for cache in ("profile", "summary", "search"):
        for result in ("hit", "miss", "error"):
            value = scraped(text, "patient_search_cache_requests_total", cache=cache, result=result)
            assert value is not None, (cache, result)
    before = sample("patient_search_cache_requests_total", cache="search", result="miss")
    record_cache("search", "miss")
    assert sample("patient_search_cache_requests_total", cache="search", result="miss") == (
        before + 1
    )
    with pytest.raises(ValueError):
        record_cache("search", "maybe")


async def test_rejection_series_exist_at_zero_and_refuse_unknown_labels(
    client: httpx.AsyncClient,
) -> None:
    text = (await client.get("/metrics")).text
    for cache in ("profile", "summary", "search"):
        assert scraped(text, "patient_search_cache_rejected_total", cache=cache) is not None
    for reason in ("signature", "time", "unreadable"):
        assert (
            scraped(text, "patient_search_audit_journal_rejected_total", reason=reason) is not None
        )
    with pytest.raises(ValueError):
        record_cache_rejected("Patient")
    with pytest.raises(ValueError):
        record_journal_rejected("forged", 1)


@pytest.mark.parametrize(
    ("buckets", "fast", "slow"),
    [
        (metrics.REQUEST_BUCKETS, 0.002, 0.020),
        (metrics.REQUEST_BUCKETS, 0.100, 2.0),
        (metrics.QUERY_BUCKETS, 0.002, 0.020),
        (metrics.QUERY_BUCKETS, 0.100, 2.0),
    ],
)
def test_buckets_tell_the_slo_distinctions_apart(
    buckets: tuple[float, ...], fast: float, slow: float
) -> None:
    # Both thresholds are bucket bounds, and a bound lies strictly between them.
    assert fast in buckets
    assert slow in buckets
    assert any(fast < bound < slow for bound in buckets)


async def test_pool_gauges_and_acquire_histogram(tiny_pool_app: FastAPI) -> None:
    pool = tiny_pool_app.state.services.pool
    await pool.wait(timeout=5)
    sampler = RuntimeSampler(pool)
    acquire = "patient_search_db_pool_acquire_seconds"
    # Above 0.1 s with no upper bound: how much longer a loaded machine takes to give up is
    # not this test's business (it failed once at <= 0.5 s while the whole suite ran).
    waited_before = sample(f"{acquire}_count") - sample(f"{acquire}_bucket", le="0.1")
    count_before = sample(f"{acquire}_count")
    async with asgi_client(tiny_pool_app) as client:
        async with pool.connection():  # hold the only connection
            request = asyncio.create_task(
                client.get(f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id()))
            )
            for _ in range(100):
                await asyncio.sleep(0.01)
                if pool.get_stats().get("requests_waiting"):
                    break
            # Sample and read with no await between: other apps' samplers share the gauges.
            sampler.sample_pool()
            assert sample("patient_search_db_pool_waiting") == 1
            assert sample("patient_search_db_pool_connections", state="in_use") == 1
            assert sample("patient_search_db_pool_connections", state="idle") == 0
            assert sample("patient_search_db_pool_max_connections") == 1
            response = await request
        assert response.status_code == 503
        sampler.sample_pool()
        assert sample("patient_search_db_pool_waiting") == 0
        assert sample("patient_search_db_pool_connections", state="idle") == 1
    waited = sample(f"{acquire}_count") - sample(f"{acquire}_bucket", le="0.1")
    assert waited >= waited_before + 1  # the request that waited 0.3 s and gave up
    assert sample(f"{acquire}_count") >= count_before + 2


async def test_event_loop_lag_shows_a_blocked_loop(app: FastAPI) -> None:
    sampler = RuntimeSampler(app.state.services.pool, interval_s=0.02, lag_window_s=1.0)
    sampler.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the point: starve the loop
        await asyncio.sleep(0.05)
        assert sample("patient_search_event_loop_lag_seconds") >= 0.25
    finally:
        await sampler.stop()
    sampler.record_lag(-0.001)  # an early wake-up is no lag
    assert min(sampler._lags) == 0.0


async def test_metrics_can_be_disabled(database_url: str) -> None:
    app = create_app(make_settings(database_url, metrics_enabled=False))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        response = await client.get("/metrics")
        assert response.status_code == 404


async def test_metrics_can_live_on_a_port_of_their_own(database_url: str) -> None:
    port = free_port()
    app = create_app(make_settings(database_url, metrics_port=port))
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        assert (await client.get("/metrics")).status_code == 404
        await client.get("/healthz")
        async with httpx.AsyncClient() as scraper:
            response = await scraper.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert scraped(
            response.text, f"{REQUESTS}_count", method="GET", route="/healthz", status="200"
        )
    with pytest.raises(httpx.ConnectError):  # stopped with the lifespan
        async with httpx.AsyncClient() as scraper:
            await scraper.get(f"http://127.0.0.1:{port}/metrics")
