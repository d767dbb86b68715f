"""The JSON of POST /v1/patients/match."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from patient_search.matching.model import Grade
from patient_search.patients.schemas import (
    Address,
    BirthDate,
    Email,
    EmergencyContact,
    Insurance,
    Mrn,
    Name,
    PatientSummary,
    Phone,
    Sex,
    Status,
)


class MatchRequest(BaseModel):
    """A person as a clerk would register them; every field optional."""

    model_config = ConfigDict(extra="forbid")

    mrn: Mrn | None = None
    first_name: Name | None = None
    middle_name: Name | None = None
    last_name: Name | None = None
    date_of_birth: BirthDate | None = None
    sex: Sex | None = None
    phones: Annotated[list[Phone], Field(max_length=5)] = []
    email: Email | None = None
    address: Address | None = None
    # Accepted so that a whole registration body can be checked as it is; not compared.
    status: Status | None = None
    emergency_contacts: Annotated[list[EmergencyContact], Field(max_length=5)] = []
    insurance: Annotated[list[Insurance], Field(max_length=5)] = []

    def is_enough_to_match(self) -> bool:
        """A last name, or a date of birth with one other field (else 400, not 422: the
        body is well formed, it just says too little)."""
        others = (self.first_name, self.middle_name, self.phones, self.email, self.sex)
        return bool(self.last_name) or (self.date_of_birth is not None and any(others))


class MatchItem(BaseModel):
    """A patient who may be the person asked about."""

    patient: PatientSummary
    grade: Grade
    score: Annotated[float, Field(ge=0, le=1)]
    matched: dict[str, str]


class MatchResult(BaseModel):
    """The candidates, best first, and how many were compared and ruled out."""

    items: list[MatchItem]
    eliminated: int
