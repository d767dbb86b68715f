"""The duplicate check: who in the clinic may be the person about to be registered?

Candidates come through indexes only. Search finds them by name, with the date of birth
typed as evidence (exact and near dates); phone, email, and postal code with the date of
birth find them by identifier. Each candidate is then compared field by field
(`compare.py`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from patient_search.contacts import normalize_email, normalize_phone, postal_code_key
from patient_search.db.statements import Row, StatementRunner
from patient_search.matching.compare import (
    Comparison,
    MatchRecord,
    compare,
    folded_name,
    folded_text,
)
from patient_search.matching.model import DEFAULT_MODEL, Grade, MatchModel
from patient_search.matching.repository import MatchRepository
from patient_search.matching.schemas import MatchItem, MatchRequest, MatchResult
from patient_search.patients.schemas import Address, PatientSummary
from patient_search.search.cursor import CursorCodec
from patient_search.search.repository import SearchRepository
from patient_search.search.schemas import SearchCriteria
from patient_search.search.service import SearchService
from patient_search.search.statistics import term_weights

# Name candidates read from search: enough that a common name's namesakes still leave room
# for the one with the right date of birth, which search ranks first anyway.
SEARCH_CANDIDATES = 50
MAX_QUERY_LENGTH = 200
SUSPECTED: frozenset[Grade] = frozenset({"certain", "probable"})
# A clinic's estimated model changes only when `patient-search duplicates` runs again.
MODEL_TTL_S = 600.0
_MODELS: dict[str, tuple[float, MatchModel]] = {}
_log = logging.getLogger(__name__)


async def clinic_model(clinic_id: str, repo: MatchRepository) -> MatchModel:
    """The clinic's estimated model (decision 0019), or the default one; kept per worker."""
    now = time.monotonic()
    known = _MODELS.get(clinic_id)
    if known is not None and now - known[0] < MODEL_TTL_S:
        return known[1]
    stored = await repo.clinic_model()
    model = DEFAULT_MODEL
    if stored is not None:
        try:
            model = MatchModel.from_json(stored)
        except (KeyError, TypeError, ValueError, AttributeError):
            _log.warning("match model of a clinic is unreadable; default weights used")
    _MODELS[clinic_id] = (now, model)
    return model


@dataclass(frozen=True, slots=True)
class _Scored:
    row: Row
    comparison: Comparison
    probability: float
    grade: Grade | None


def record_of(
    *,
    first: str | None,
    middle: str | None,
    last: str | None,
    born: Any,
    sex: str | None,
    phones: list[str],
    email: str | None,
    address: Address | dict[str, Any] | None,
) -> MatchRecord:
    """The comparable, folded form of a registration or a stored patient."""
    parts = Address.model_validate(address) if isinstance(address, dict) else address
    return MatchRecord(
        first=folded_name(first),
        middle=folded_name(middle),
        last=folded_name(last),
        date_of_birth=born,
        sex=sex,
        phones=frozenset(phones),
        email=email,
        street=folded_text(" ".join(parts.lines)) if parts else "",
        city=folded_text(parts.city) if parts else "",
        postal_code=postal_code_key(parts.postal_code or "") if parts else "",
    )


def stored_record(row: Row) -> MatchRecord:
    """The comparable form of a patient row (as `match.records` reads it)."""
    return record_of(
        first=row["first_name"],
        middle=row["middle_name"],
        last=row["last_name"],
        born=row["date_of_birth"],
        sex=row["sex"],
        phones=list(row["phones_e164"] or []),
        email=row["email_normalized"],
        address=row["address"],
    )


class MatchService:
    """Finds and grades the patients of one clinic who may be a given person."""

    def __init__(
        self, runner: StatementRunner, cursors: CursorCodec, clinic_id: str, region: str
    ) -> None:
        self._search_repo = SearchRepository(runner)
        self._repo = MatchRepository(runner)
        self._cursors = cursors
        self._clinic_id = clinic_id
        self._region = region

    async def match(self, request: MatchRequest, limit: int, only_certain: bool) -> MatchResult:
        """The candidates graded possible or better, best first; the rest are counted."""
        phones = [e164 for p in request.phones if (e164 := normalize_phone(p, self._region))]
        email = normalize_email(request.email) if request.email else None
        query = record_of(
            first=request.first_name,
            middle=request.middle_name,
            last=request.last_name,
            born=request.date_of_birth,
            sex=request.sex,
            phones=phones,
            email=email,
            address=request.address,
        )
        ids = await self._name_candidates(request)
        postal = query.postal_code or None
        ids |= await self._repo.identifier_candidates(
            phones, [email] if email else [], postal, request.date_of_birth
        )
        rows = await self._repo.records(sorted(ids))
        terms = [t.replace(" ", "") for t in (query.first, query.last) if t]
        weights = await term_weights(self._clinic_id, self._search_repo, terms)
        model = await clinic_model(self._clinic_id, self._repo)
        scored = []
        for row in rows:
            comparison = compare(query, stored_record(row))
            probability = model.probability(comparison, weights)
            grade = model.grade(comparison, probability)
            scored.append(_Scored(row, comparison, probability, grade))
        scored.sort(key=lambda s: (-s.probability, s.row["last_name"], str(s.row["id"])))
        kept = [s for s in scored if s.grade is not None]
        if only_certain:
            certain = [s for s in kept if s.grade == "certain"]
            kept = certain if len(certain) == 1 else []
        items = [
            MatchItem(
                patient=PatientSummary.model_validate(s.row),
                grade=s.grade,
                score=round(s.probability, 6),
                matched=s.comparison.levels,
            )
            for s in kept[:limit]
            if s.grade is not None
        ]
        return MatchResult(items=items, eliminated=sum(1 for s in scored if s.grade is None))

    async def suspected(self, request: MatchRequest) -> list[dict[str, object]]:
        """Candidates graded certain or probable, as a 409 may list them: id, grade, score."""
        result = await self.match(request, limit=10, only_certain=False)
        return [
            {"id": str(item.patient.id), "grade": item.grade, "score": item.score}
            for item in result.items
            if item.grade in SUSPECTED
        ]

    async def _name_candidates(self, request: MatchRequest) -> set[uuid.UUID]:
        names = " ".join(filter(None, (request.first_name, request.last_name)))
        born = request.date_of_birth
        if not names and born is None:
            return set()
        # The date typed beside the names is evidence (exact, near, different), not a filter.
        text = f"{names} {born.isoformat()}" if names and born else names
        criteria = SearchCriteria(
            q=text[:MAX_QUERY_LENGTH] or None,
            date_of_birth=born if not names else None,
            limit=SEARCH_CANDIDATES,
        )
        search = SearchService(self._search_repo, self._cursors, self._clinic_id, self._region)
        page = await search.search(criteria)
        return {item.id for item in page.items}
