"""HTTP routes for patient records."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from patient_search.auth.dependencies import Reader, Writer
from patient_search.db.dependencies import ReadDb, WriteDb
from patient_search.errors import InvalidRequest
from patient_search.patients.repository import PatientRepository
from patient_search.patients.schemas import Patient, PatientCreate, PatientPatch
from patient_search.patients.service import PatientService
from patient_search.search.index_repository import SearchIndexRepository
from patient_search.state import State

router = APIRouter(prefix="/v1/patients", tags=["patients"])

_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')
NO_STORE = "no-store"


def _service(db: ReadDb | WriteDb, clinic_id: str, state: State) -> PatientService:
    return PatientService(
        PatientRepository(db), SearchIndexRepository(db), clinic_id, state.settings.phone_region
    )


def _etag(patient: Patient) -> str:
    return f'"{patient.version}"'


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.match(if_match.strip())
    if found is None:
        raise InvalidRequest('If-Match must be an ETag of this API, like "3"')
    return int(found.group(1))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Patient)
async def create_patient(
    body: PatientCreate, principal: Writer, db: WriteDb, state: State, response: Response
) -> Patient:
    """Register a patient in the caller's clinic."""
    patient = await _service(db, principal.clinic_id, state).create(body)
    response.headers["Location"] = f"/v1/patients/{patient.id}"
    response.headers["ETag"] = _etag(patient)
    response.headers["Cache-Control"] = NO_STORE
    return patient


@router.get("/{patient_id}", response_model=Patient)
async def get_patient(
    patient_id: uuid.UUID, principal: Reader, db: ReadDb, state: State, response: Response
) -> Patient:
    """One patient of the caller's clinic."""
    patient = await _service(db, principal.clinic_id, state).get(patient_id)
    response.headers["ETag"] = _etag(patient)
    response.headers["Cache-Control"] = NO_STORE
    return patient


@router.patch("/{patient_id}", response_model=Patient)
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
    patient = await _service(db, principal.clinic_id, state).update(patient_id, body, expected)
    response.headers["ETag"] = _etag(patient)
    response.headers["Cache-Control"] = NO_STORE
    return patient


@router.delete("/{patient_id}", status_code=status.HTTP_204_NO_CONTENT)
async def archive_patient(
    patient_id: uuid.UUID, principal: Writer, db: WriteDb, state: State
) -> Response:
    """Archive a patient: kept for the record, gone from lookups and search."""
    await _service(db, principal.clinic_id, state).archive(patient_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
