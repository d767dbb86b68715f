"""The patient JSON the API reads and writes, validated at the edge."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

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


def _sent_at_most(limit: int) -> BeforeValidator:
    """Bounds text as sent, before stripping, as the OpenAPI document's maxLength says."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return BeforeValidator(check)


def _phone(value: str) -> str:
    if not is_plausible_phone(value):
        raise ValueError("must be a phone number of 7 to 15 digits")
    return value


def _email(value: str) -> str:
    if not is_valid_email(value):
        raise ValueError("must be an email address like name@example.com")
    return value


_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_date(value: object) -> object:
    # Pydantic would read 0 or "86400" as seconds since 1970, and accept a datetime at midnight.
    if isinstance(value, dt.date) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be a date written YYYY-MM-DD")


def _birth_date(value: dt.date) -> dt.date:
    if value > dt.date.today():
        raise ValueError("must not be in the future")
    if value < EARLIEST_BIRTH:
        raise ValueError("must not be before 1900-01-01")
    return value


# Shapes for the OpenAPI document only (the validators decide), at least as loose as they are:
# generated "valid" examples then mostly are, and "invalid" ones really are.
_CC = r"\u0000-\u001f\u007f-\u009f"
_SINGLE_LINE_DOC = Field(
    json_schema_extra={"pattern": rf"^\s*[^\s{_CC}]([^{_CC}]*[^\s{_CC}])?\s*$"}
)
_EMAIL_DOC = Field(
    json_schema_extra={"pattern": rf"^\s*[^@\s{_CC}]+@[^@\s{_CC}]+\.[^@\s.{_CC}]+\s*$"}
)

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    _sent_at_most(100),
    AfterValidator(_single_line),
    _SINGLE_LINE_DOC,
]
Mrn = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    _sent_at_most(64),
    AfterValidator(_single_line),
    _SINGLE_LINE_DOC,
]
# Control characters first: a NUL must be a 422 here, not a 500 from PostgreSQL.
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=40),
    _sent_at_most(40),
    AfterValidator(_single_line),
    AfterValidator(_phone),
]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254),
    _sent_at_most(254),
    AfterValidator(_single_line),
    AfterValidator(_email),
    _EMAIL_DOC,
]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
BirthDate = Annotated[IsoDate, AfterValidator(_birth_date)]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    _sent_at_most(200),
    AfterValidator(_single_line),
    _SINGLE_LINE_DOC,
]


class EmergencyContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ShortText
    relationship: ShortText | None = None
    phone: Phone | None = None


class Insurance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payer: ShortText
    member_id: Annotated[ShortText, Field(max_length=64), _sent_at_most(64)]


class Address(BaseModel):
    """A postal address as registered; every part optional."""

    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[ShortText], Field(max_length=3)] = []
    city: Annotated[ShortText, Field(max_length=100), _sent_at_most(100)] | None = None
    state: Annotated[ShortText, Field(max_length=100), _sent_at_most(100)] | None = None
    postal_code: Annotated[ShortText, Field(max_length=20), _sent_at_most(20)] | None = None
    country: Annotated[ShortText, Field(max_length=100), _sent_at_most(100)] | None = None

    def is_empty(self) -> bool:
        """Whether no part was given (stored as no address)."""
        return not (self.lines or self.city or self.state or self.postal_code or self.country)


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
    address: Address | None = None
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
    address: Address | None = None
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


class PatientSummary(PatientIdentity):
    """The small record appointment lists and search hits need, with its version."""

    version: int


class Patient(PatientIdentity):
    """A patient as the API returns it."""

    address: Address | None = None
    emergency_contacts: list[EmergencyContact]
    insurance: list[Insurance]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
