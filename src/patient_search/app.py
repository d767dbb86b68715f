"""The ASGI application: routes, error rendering and the engines' lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from patient_search.audit.journal import build_audit_journal
from patient_search.audit.trail import AccessTrail
from patient_search.auth.tokens import TokenVerifier
from patient_search.cache.build import build_patient_cache, describe_backend
from patient_search.db.pool import build_pool
from patient_search.limits import BodySizeLimit, Utf8Url
from patient_search.matching.router import router as match_router
from patient_search.observability.logs import configure_logging
from patient_search.observability.metrics import (
    observe_pool_acquire,
    record_cache,
    record_cache_rejected,
    record_journal_rejected,
)
from patient_search.observability.middleware import RequestObservability
from patient_search.observability.runtime import Observability
from patient_search.patients.router import router as patients_router
from patient_search.patients.shortcut import CachedReadShortcut
from patient_search.problems import install_problem_handlers
from patient_search.rate_limit import build_search_limiter
from patient_search.search.gate import ClinicGate
from patient_search.search.router import router as search_router
from patient_search.settings import Settings, get_settings
from patient_search.state import AppState, State
from patient_search.web.router import build_router as build_web_router
from patient_search.web.timing import ServerTiming


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing connects until the lifespan starts."""
    settings = settings or get_settings()
    settings.require_runnable()
    observability = Observability(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        pool = build_pool(
            settings, on_acquire=observe_pool_acquire, refuse_privileged=settings.env != "dev"
        )
        # wait=False: a worker starts even while the database is down; /readyz says so.
        await pool.open(wait=False)
        await observability.start(pool)
        cache = build_patient_cache(
            settings, record=record_cache, record_rejected=record_cache_rejected
        )
        access_trail = AccessTrail(
            pool, observability.query_observer, durable=settings.audit_durable_views
        )
        access_trail.start()
        audit_journal = build_audit_journal(
            settings, pool, observability.query_observer, record_rejected=record_journal_rejected
        )
        if audit_journal is not None:
            audit_journal.start()
        search_limiter = build_search_limiter(settings)
        app.state.services = AppState(
            settings=settings,
            pool=pool,
            query_observer=observability.query_observer,
            cache=cache,
            access_trail=access_trail,
            audit_journal=audit_journal,
            search_limiter=search_limiter,
            search_gate=ClinicGate(
                settings.search_concurrency_per_clinic, settings.search_queue_wait_ms / 1000
            ),
            tokens=TokenVerifier(
                settings.effective_jwt_secret,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            ),
        )
        try:
            yield
        finally:
            # Requests have drained by now; what the trail and journal hold is written first.
            if audit_journal is not None:
                await audit_journal.close()
            await access_trail.close()
            await search_limiter.close()
            await cache.close()
            await observability.stop()
            await pool.close()

    app = FastAPI(
        title="patient-search",
        version="0.1.0",
        summary="Find the right patient first, in milliseconds, within your clinic.",
        lifespan=lifespan,
    )
    # Innermost: answers profile and summary cache hits before routing (decision 0016).
    app.add_middleware(CachedReadShortcut)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ServerTiming)
    app.add_middleware(Utf8Url)
    # Outermost: times and logs every request, rejections by the other middleware included.
    app.add_middleware(RequestObservability, emf=observability.emf)
    observability.install_endpoint(app)
    install_problem_handlers(app)
    app.include_router(search_router)
    app.include_router(match_router)
    app.include_router(patients_router)
    app.include_router(build_web_router(settings))

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
            "cache": await _cache_state(state),
            # on: cache hits are audited through Redis (decision 0014); off/disabled: each
            # view commits its own entry. Never a reason to be unready.
            "audit_journal": "disabled"
            if state.audit_journal is None
            else state.audit_journal.state,
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app


async def _cache_state(state: AppState) -> str:
    """redis, in-process or disabled when usable; unavailable when requests bypass it."""
    if await state.cache.backend.probe() != "ok":
        return "unavailable"
    return describe_backend(state.settings)
