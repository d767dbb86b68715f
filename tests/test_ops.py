"""Health, readiness and the designed failure modes: pool exhausted, database down."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI

from patient_search.app import create_app
from tests.conftest import asgi_client, make_settings
from tests.factories import bearer, new_clinic_id


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database_and_cache(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert "cache" in response.json()


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/v1/patients/{patient_id}" in response.json()["paths"]


async def test_every_patient_operation_declares_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    [scheme] = document["components"]["securitySchemes"]
    assert document["components"]["securitySchemes"][scheme]["scheme"] == "bearer"
    operations = [
        (method, path, operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) == 7
    for method, path, operation in operations:
        assert operation.get("security") == [{scheme: []}], (method, path)


async def test_unknown_route_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_pool_exhaustion_is_a_quick_503_with_retry_after(tiny_pool_app: FastAPI) -> None:
    pool = tiny_pool_app.state.services.pool
    async with asgi_client(tiny_pool_app) as client:
        async with pool.connection():  # hold the only connection
            response = await asyncio.wait_for(
                client.get(f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id())),
                timeout=5,
            )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/problem+json"
        after = await client.get(f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id()))
        assert after.status_code == 404


async def test_database_down_is_503_and_not_ready() -> None:
    settings = make_settings(
        "postgresql://postgres@127.0.0.1:1/nowhere", db_pool_acquire_timeout_s=0.5
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with asgi_client(app) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == "unavailable"
            response = await client.get(
                f"/v1/patients/{uuid.uuid4()}", headers=bearer(new_clinic_id())
            )
            assert response.status_code == 503
            assert "retry-after" in response.headers
            assert (await client.get("/healthz")).status_code == 200
