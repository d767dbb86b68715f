"""GET /v1/patients: the one search box and its filters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from patient_search.auth.dependencies import Reader
from patient_search.db.dependencies import ReadDb
from patient_search.search.cursor import CursorCodec
from patient_search.search.repository import SearchRepository
from patient_search.search.schemas import SearchCriteria, SearchPage
from patient_search.search.service import SearchService
from patient_search.state import State

router = APIRouter(prefix="/v1/patients", tags=["search"])


@router.get("", response_model=SearchPage)
async def search_patients(
    criteria: Annotated[SearchCriteria, Query()],
    principal: Reader,
    db: ReadDb,
    state: State,
    response: Response,
) -> SearchPage:
    """Find patients of the caller's clinic by name, phone, email, date of birth or MRN."""
    service = SearchService(
        SearchRepository(db),
        CursorCodec(state.settings.effective_jwt_secret),
        principal.clinic_id,
        state.settings.phone_region,
    )
    page = await service.search(criteria)
    response.headers["Cache-Control"] = "no-store"
    return page
