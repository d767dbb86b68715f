"""GET /v1/patients: the one search box and its filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from patient_search.auth.dependencies import Reader
from patient_search.db.dependencies import OnDemandReadDb
from patient_search.problems import problem_responses
from patient_search.search.cursor import CursorCodec
from patient_search.search.schemas import SearchCriteria, SearchPage
from patient_search.search.service import CachedSearch
from patient_search.state import State

router = APIRouter(prefix="/v1/patients", tags=["search"])


async def limit_search(principal: Reader, state: State) -> None:
    """429 with Retry-After when the user (token sub, in the clinic) searches too often."""
    await state.search_limiter.check(principal.clinic_id, principal.user_id)


@router.get(
    "",
    response_model=SearchPage,
    responses=problem_responses(429),
    dependencies=[Depends(limit_search)],
)
async def search_patients(
    criteria: Annotated[SearchCriteria, Query()],
    reader: OnDemandReadDb,
    state: State,
    response: Response,
) -> SearchPage:
    """Find patients of the caller's clinic by name, phone, email, date of birth or MRN."""
    search = CachedSearch(
        state.cache,
        reader,
        CursorCodec(state.settings.effective_jwt_secret),
        state.settings.phone_region,
    )
    page = await search.search(criteria)
    response.headers["Cache-Control"] = "no-store"
    return page
