"""What the lifespan builds and every request reads: settings, pool, observers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from patient_search.audit.journal import AuditJournal
from patient_search.audit.trail import AccessTrail
from patient_search.auth.tokens import TokenVerifier
from patient_search.cache.policies import PatientCache
from patient_search.db.pool import AppConnection
from patient_search.db.statements import QueryObserver
from patient_search.rate_limit import RateLimiter
from patient_search.search.gate import ClinicGate
from patient_search.settings import Settings


@dataclass(slots=True)
class AppState:
    """The engines of one worker process, built in the lifespan and closed with it."""

    settings: Settings
    pool: AsyncConnectionPool[AppConnection]
    query_observer: QueryObserver
    cache: PatientCache
    access_trail: AccessTrail
    # None when views are never journaled (no Redis, cache off, or durable views).
    audit_journal: AuditJournal | None
    search_limiter: RateLimiter
    search_gate: ClinicGate
    tokens: TokenVerifier


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread
# pool, a hop that cost ~60 µs each — a millisecond per request across the chain.
async def get_app_state(request: Request) -> AppState:
    """The worker's state, as the lifespan stored it."""
    state: AppState = request.app.state.services
    return state


State = Annotated[AppState, Depends(get_app_state)]
