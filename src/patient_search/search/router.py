"""GET /v1/patients: the one search box and its filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from patient_search.auth.dependencies import BEARER_REQUIRED
from patient_search.db.dependencies import OnDemandReadDb
from patient_search.problems import problem_responses
from patient_search.search.cursor import CursorCodec
from patient_search.search.schemas import SearchCriteria, SearchPage
from patient_search.search.service import CachedSearch

router = APIRouter(prefix="/v1/patients", tags=["search"])


@router.get(
    "",
    response_model=SearchPage,
    responses=problem_responses(429),
    openapi_extra=BEARER_REQUIRED,
)
async def search_patients(
    criteria: Annotated[SearchCriteria, Query()], reader: OnDemandReadDb
) -> Response:
    """Find patients of the caller's clinic by name, phone, email, date of birth or MRN."""
    state = reader.state
    # 429 with Retry-After when the user (token sub, in the clinic) searches too often.
    await state.search_limiter.check(reader.clinic_id, reader.principal.user_id)
    search = CachedSearch(
        state.cache,
        reader,
        CursorCodec(state.settings.effective_jwt_secret),
        state.settings.phone_region,
    )
    page = await search.search(criteria)
    # Already the response model's JSON (decision 0015).
    return Response(page.body, media_type="application/json", headers={"Cache-Control": "no-store"})
