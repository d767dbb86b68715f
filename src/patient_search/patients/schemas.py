"""The patient JSON the API reads and writes, validated at the edge."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from patient_search.contacts import is_plausible_phone, is_valid_email

Sex = Literal["female", "male", "other", "unknown"]
Status = Literal["active", "inactive", "deceased"]
EARLIEST_BIRTH = dt.date(1900, 1, 1)


# Unicode category Cc: C0 controls, DEL and C1 controls.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _single_line(value: str) -> str:
    # PostgreSQL rejects NUL in text; other control characters in a name are typing accidents.
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters")
    return value


def _phone(value: str) -> str:
    if not is_plausible_phone(value):
        raise ValueError("must be a phone number of 7 to 15 digits")
    return value


def _email(value: str) -> str:
    if not is_valid_email(value):
        raise ValueError("must be an email address like name@example.com")
    return value


def _birth_date(value: dt.date) -> dt.date:
    if value > dt.date.today():
        raise ValueError("must not be in the future")
    if value < EARLIEST_BIRTH:
        raise ValueError("must not be before 1900-01-01")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_single_line),
]
Mrn = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_single_line),
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=40), AfterValidator(_phone)
]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
BirthDate = Annotated[dt.date, AfterValidator(_birth_date)]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_single_line),
]


class EmergencyContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText
    relationship: ShortText | None = None
    phone: Phone | None = None


class Insurance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payer: ShortText
    member_id: Annotated[ShortText, Field(max_length=64)]


class PatientFields(BaseModel):
    """Fields a client may write; shared by create and the importer."""

    model_config = ConfigDict(extra="forbid")

    mrn: Mrn
    first_name: Name | None = None
    middle_name: Name | None = None
    last_name: Name
    date_of_birth: BirthDate | None = None
    sex: Sex | None = None
    status: Status = "active"
    phones: Annotated[list[Phone], Field(max_length=5)] = []
    email: Email | None = None
    emergency_contacts: Annotated[list[EmergencyContact], Field(max_length=5)] = []
    insurance: Annotated[list[Insurance], Field(max_length=5)] = []


class PatientCreate(PatientFields):
    """Body of POST /v1/patients."""


class PatientPatch(BaseModel):
    """Body of PATCH /v1/patients/{id}: only the fields present change; null clears."""

    model_config = ConfigDict(extra="forbid")

    mrn: Mrn | None = None
    first_name: Name | None = None
    middle_name: Name | None = None
    last_name: Name | None = None
    date_of_birth: BirthDate | None = None
    sex: Sex | None = None
    status: Status | None = None
    phones: Annotated[list[Phone], Field(max_length=5)] | None = None
    email: Email | None = None
    emergency_contacts: Annotated[list[EmergencyContact], Field(max_length=5)] | None = None
    insurance: Annotated[list[Insurance], Field(max_length=5)] | None = None

    def changes(self) -> dict[str, object]:
        """The fields the client sent, with their new values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


# Fields that may not be cleared by sending null.
REQUIRED_ON_PATCH = frozenset(
    {"mrn", "last_name", "status", "phones", "emergency_contacts", "insurance"}
)


class PatientIdentity(BaseModel):
    """What identifies a patient at the desk: shown in full profiles and in search hits."""

    id: uuid.UUID
    mrn: str
    first_name: str | None
    middle_name: str | None
    last_name: str
    date_of_birth: dt.date | None
    sex: Sex | None
    status: Status
    phones: list[str]
    email: str | None


class Patient(PatientIdentity):
    """A patient as the API returns it."""

    emergency_contacts: list[EmergencyContact]
    insurance: list[Insurance]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
