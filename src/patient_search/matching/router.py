"""POST /v1/patients/match: who in the clinic may be this person?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from patient_search.auth.dependencies import BEARER_REQUIRED
from patient_search.db.dependencies import OnDemandReadDb
from patient_search.errors import InvalidRequest
from patient_search.matching.schemas import MatchRequest, MatchResult
from patient_search.matching.service import MatchService
from patient_search.problems import problem_response, problem_responses
from patient_search.search.cursor import CursorCodec

router = APIRouter(prefix="/v1/patients", tags=["matching"])


@router.post(
    "/match",
    response_model=MatchResult,
    responses=problem_responses(400, 415, 429),
    openapi_extra=BEARER_REQUIRED,
)
async def match_patients(
    body: MatchRequest,
    reader: OnDemandReadDb,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    only_certain: bool = False,
) -> MatchResult:
    """Patients of the caller's clinic who may be the person described, graded, best first."""
    if not body.is_enough_to_match():
        raise InvalidRequest("give a last name, or a date of birth with one other field")
    state = reader.state
    # The check runs search's statements: the same per-user limit and per-clinic slots.
    await state.search_limiter.check(reader.clinic_id, reader.principal.user_id)
    cursors = CursorCodec(state.settings.effective_jwt_secret)
    async with state.search_gate.slot(reader.clinic_id), reader.transaction() as db:
        service = MatchService(db, cursors, reader.clinic_id, state.settings.phone_region)
        return await service.match(body, limit, only_certain)


@router.api_route("/match", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def match_other_methods() -> JSONResponse:
    """405, not the profile routes' "not a patient id" 400: /match is a resource of its own."""
    detail = "use POST for /v1/patients/match"
    return problem_response(405, "Method Not Allowed", detail, {"Allow": "POST"})
