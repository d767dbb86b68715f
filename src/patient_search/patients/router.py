"""HTTP routes for patient records."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from patient_search.audit.recorders import ViewAudit, WriteAudit
from patient_search.audit.repository import AuditRepository
from patient_search.auth.dependencies import BEARER_REQUIRED, Writer
from patient_search.auth.tokens import Principal
from patient_search.cache.policies import Rendered
from patient_search.db.dependencies import OnDemandReadDb, WriteDb
from patient_search.errors import DuplicateSuspected, InvalidRequest
from patient_search.matching.schemas import MatchRequest
from patient_search.matching.service import MatchService
from patient_search.observability.context import request_id
from patient_search.patients.repository import PatientRepository
from patient_search.patients.schemas import Patient, PatientCreate, PatientPatch, PatientSummary
from patient_search.patients.service import PatientLookup, PatientService
from patient_search.problems import problem_responses
from patient_search.search.cursor import CursorCodec
from patient_search.search.index_repository import SearchIndexRepository
from patient_search.state import State

router = APIRouter(prefix="/v1/patients", tags=["patients"])

_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')
NO_STORE = "no-store"
# Set in the request's state by the cached-read shortcut when its read journaled the view but
# found the value unusable: the route reads on without auditing the view again.
VIEW_JOURNALED = "view_journaled"


def _service(db: WriteDb, principal: Principal, state: State) -> PatientService:
    return PatientService(
        PatientRepository(db),
        SearchIndexRepository(db),
        principal.clinic_id,
        state.settings.phone_region,
        cache=state.cache,
        after_commit=db.after_commit,
        audit=WriteAudit(AuditRepository(db), principal.user_id, request_id.get()),
    )


def lookup_for(reader: OnDemandReadDb) -> PatientLookup:
    state = reader.state
    audit = ViewAudit(
        state.access_trail,
        reader.clinic_id,
        reader.principal.user_id,
        request_id.get(),
        state.audit_journal,
    )
    return PatientLookup(state.cache, reader, state.settings.phone_region, audit)


def _journaled(request: Request) -> bool:
    return bool(request.scope.get("state", {}).get(VIEW_JOURNALED))


def _etag(patient: Patient) -> str:
    return f'"{patient.version}"'


def record_response(record: Rendered) -> Response:
    # The body is already the response model's JSON (rendered once, maybe read from the
    # cache): FastAPI's validate-and-serialise pass is skipped (decision 0015).
    return Response(
        record.body,
        media_type="application/json",
        headers={"ETag": f'"{record.version}"', "Cache-Control": NO_STORE},
    )


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.match(if_match.strip())
    if found is None:
        raise InvalidRequest('If-Match must be an ETag of this API, like "3"')
    return int(found.group(1))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Patient,
    responses=problem_responses(409, 415),
)
async def create_patient(
    body: PatientCreate,
    principal: Writer,
    db: WriteDb,
    state: State,
    response: Response,
    allow_duplicate: bool = False,
) -> Patient:
    """Register a patient in the caller's clinic.

    When the patient may already be registered (a `certain` or `probable` match), answers
    409 `duplicate-suspected` with the candidates' ids, grades and scores only;
    `?allow_duplicate=true` registers anyway, and the audit trail records the override."""
    matches = MatchService(
        db,
        CursorCodec(state.settings.effective_jwt_secret),
        principal.clinic_id,
        state.settings.phone_region,
    )
    suspected = await matches.suspected(MatchRequest.model_validate(body.model_dump()))
    if suspected and not allow_duplicate:
        raise DuplicateSuspected(suspected)
    patient = await _service(db, principal, state).create(body, overriding=bool(suspected))
    response.headers["Location"] = f"/v1/patients/{patient.id}"
    response.headers["ETag"] = _etag(patient)
    response.headers["Cache-Control"] = NO_STORE
    return patient


@router.get(
    "/{patient_id}",
    response_model=Patient,
    responses=problem_responses(404),
    openapi_extra=BEARER_REQUIRED,
)
async def get_patient(patient_id: uuid.UUID, reader: OnDemandReadDb, request: Request) -> Response:
    """One patient of the caller's clinic (served from the profile cache when it can be)."""
    lookup = lookup_for(reader)
    return record_response(await lookup.profile(patient_id, journaled=_journaled(request)))


@router.get(
    "/{patient_id}/summary",
    response_model=PatientSummary,
    responses=problem_responses(404),
    openapi_extra=BEARER_REQUIRED,
)
async def get_patient_summary(
    patient_id: uuid.UUID, reader: OnDemandReadDb, request: Request
) -> Response:
    """The small record appointment lists need: name, date of birth, MRN, status, phones."""
    lookup = lookup_for(reader)
    return record_response(await lookup.summary(patient_id, journaled=_journaled(request)))


@router.patch(
    "/{patient_id}", response_model=Patient, responses=problem_responses(404, 409, 412, 415)
)
async def update_patient(
    patient_id: uuid.UUID,
    body: PatientPatch,
    principal: Writer,
    db: WriteDb,
    state: State,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
) -> Patient:
    """Change some fields of a patient; `If-Match` makes it conditional on a version."""
    expected = _expected_version(if_match)
    patient = await _service(db, principal, state).update(patient_id, body, expected)
    response.headers["ETag"] = _etag(patient)
    response.headers["Cache-Control"] = NO_STORE
    return patient


@router.delete(
    "/{patient_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
)
async def archive_patient(
    patient_id: uuid.UUID, principal: Writer, db: WriteDb, state: State
) -> Response:
    """Archive a patient: kept for the record, gone from lookups and search."""
    await _service(db, principal, state).archive(patient_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
