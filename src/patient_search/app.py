"""The ASGI application: routes, error rendering and the engines' lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from patient_search.db.pool import build_pool
from patient_search.limits import BodySizeLimit
from patient_search.observability.logs import configure_logging
from patient_search.observability.slow_queries import SlowQueryLog
from patient_search.patients.router import router as patients_router
from patient_search.problems import install_problem_handlers
from patient_search.search.router import router as search_router
from patient_search.settings import Settings, get_settings
from patient_search.state import AppState, State


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing connects until the lifespan starts."""
    settings = settings or get_settings()
    settings.require_runnable()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        pool = build_pool(settings)
        # wait=False: a worker starts even while the database is down; /readyz says so.
        await pool.open(wait=False)
        app.state.services = AppState(
            settings=settings, pool=pool, query_observer=SlowQueryLog(settings.slow_query_ms)
        )
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="patient-search",
        version="0.1.0",
        summary="Find the right patient first, in milliseconds, within your clinic.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_problem_handlers(app)
    app.include_router(search_router)
    app.include_router(patients_router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(state: State) -> JSONResponse:
        """200 when the database answers; the body reports the database and the cache."""
        database = "ok"
        try:
            async with state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception:  # any failure means "not ready", whatever its kind
            database = "unavailable"
        body = {
            "status": "ok" if database == "ok" else "unavailable",
            "database": database,
            "cache": "in-process" if not state.settings.redis_url else "configured",
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app
