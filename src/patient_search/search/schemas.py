"""Search parameters and results as the API exchanges them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from patient_search.contacts import MAX_PHONE_DIGITS, phone_digits
from patient_search.patients.schemas import (
    IsoDate,
    PatientIdentity,
    Status,
    _sent_at_most,
    _single_line,
)

Match = Literal[
    "mrn",
    "phone",
    "email",
    "exact",
    "prefix",
    "nickname",
    "phonetic",
    "fuzzy",
    "partial",  # some typed name parts agree, others do not
    "dob_near",  # the names agree, the typed date of birth is a near miss of the patient's
]
MIN_PHONE_SUFFIX = 4


def _phone_filter(value: str) -> str:
    digits = phone_digits(value)
    if not MIN_PHONE_SUFFIX <= len(digits) <= MAX_PHONE_DIGITS or any(c.isalpha() for c in value):
        raise ValueError("must be a phone number, or at least its last 4 digits")
    return value


QueryText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_single_line)]
Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=254),
    _sent_at_most(254),
    AfterValidator(_single_line),
]


class SearchCriteria(BaseModel):
    """The query parameters of GET /v1/patients."""

    model_config = ConfigDict(extra="forbid")

    q: QueryText | None = None
    phone: Annotated[Identifier, AfterValidator(_phone_filter)] | None = None
    email: Identifier | None = None
    date_of_birth: IsoDate | None = None
    mrn: Annotated[Identifier, Field(max_length=64), _sent_at_most(64)] | None = None
    postal_code: Annotated[Identifier, Field(max_length=20), _sent_at_most(20)] | None = None
    status: Status | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    offset: Annotated[int, Field(ge=0, le=10_000)] = 0
    cursor: (
        Annotated[str, StringConstraints(max_length=512, pattern=r"^[A-Za-z0-9_-]+$")] | None
    ) = None

    @model_validator(mode="after")
    def _one_criterion_and_one_position(self) -> SearchCriteria:
        if not any(
            (
                self.q and self.q.strip(),
                self.phone,
                self.email,
                self.date_of_birth,
                self.mrn,
                self.postal_code,
            )
        ):
            raise ValueError(
                "give at least one of q, phone, email, date_of_birth, mrn or postal_code"
            )
        if self.cursor and self.offset:
            raise ValueError("use either offset or cursor, not both")
        return self


class Summary(PatientIdentity):
    """A search hit: enough to pick the right patient, and how it matched."""

    match: Match
    score: float
    matched: dict[str, str] = Field(
        default_factory=dict,
        description="Field by field, how it agreed with the query, e.g."
        ' {"last_name": "exact", "first_name": "typo", "date_of_birth": "transposed"}',
    )
    highlights: dict[str, list[tuple[int, int]]] = Field(
        default_factory=dict,
        description="Per displayed name field, the [start, end) character spans the query matched",
    )


class SearchPage(BaseModel):
    """One page of results."""

    items: list[Summary]
    total: int
    total_exact: bool
    next_cursor: str | None
