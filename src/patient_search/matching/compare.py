"""Is this the same person? Field-by-field comparison of two records, as levels.

Every field a registration has is compared at a few levels: names exact / nickname / typo /
sound-alike / different, the date of birth exact / near / different, sex, phone, email and the
address parts. A field missing on either side is not compared at all, so it neither helps nor
hurts. How much each level weighs is the model's business (`model.py`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from rapidfuzz.distance import JaroWinkler

from patient_search.search.evidence import DOB_NAMES, dob_agreement
from patient_search.search.names import (
    fold,
    name_tokens,
    nickname_variants,
    phonetic_codes,
    within_typo_budget,
)

STREET_SIMILARITY = 0.88  # Jaro-Winkler: "wallaby place" ~ "wallaby pl"
CITY_SIMILARITY = 0.9
NAME_SIMILARITY = 0.92


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """One person's comparable fields, folded: a typed registration or a stored patient."""

    first: str = ""
    middle: str = ""
    last: str = ""
    date_of_birth: dt.date | None = None
    sex: str | None = None
    phones: frozenset[str] = field(default_factory=frozenset)  # E.164
    email: str | None = None  # normalised
    street: str = ""
    city: str = ""
    postal_code: str = ""  # postal_code_key

    @property
    def has_address(self) -> bool:
        return bool(self.street or self.city or self.postal_code)


def folded_name(text: str | None) -> str:
    """A name as compared: folded tokens joined by single spaces."""
    return " ".join(name_tokens(text or ""))


def folded_text(text: str | None) -> str:
    """An address part as compared: folded, punctuation removed, single spaces."""
    return " ".join(name_tokens(fold(text or "")))


@dataclass(frozen=True, slots=True)
class Comparison:
    """How two records agree, field by field (`levels`, the API's `matched`), and for each
    agreeing name the typed term whose frequency in the clinic weighs it (`terms`)."""

    levels: dict[str, str]
    terms: dict[str, str]


def name_level(typed: str, stored: str) -> str | None:
    """How a typed name agrees with a stored one: exact, nickname, typo, phonetic or None."""
    if typed == stored or typed.replace(" ", "") == stored.replace(" ", ""):
        return "exact"
    typed_tokens, stored_tokens = typed.split(), stored.split()
    if any(len(token) > 3 for token in set(typed_tokens) & set(stored_tokens)):
        # One part of a compound agrees ("garcia" ~ "garcia lopez"); a particle alone
        # ("van", "de", "la") does not.
        return "typo"
    if any(stored in nickname_variants(token) for token in typed_tokens):
        return "nickname"
    if within_typo_budget(typed.replace(" ", ""), stored.replace(" ", "")):
        return "typo"
    if JaroWinkler.similarity(typed, stored) >= NAME_SIMILARITY:
        return "typo"
    if phonetic_codes(typed.replace(" ", "")) & phonetic_codes(stored.replace(" ", "")):
        return "phonetic"
    return None


# A stronger level first: the crosswise reading of the names is taken when it is stronger.
_NAME_RANK = {"exact": 0, "nickname": 1, "typo": 2, "phonetic": 3, None: 4}


def _names(query: MatchRecord, candidate: MatchRecord, comparison: Comparison) -> None:
    if query.first and query.last and candidate.first and candidate.last:
        first, last = query.first, query.last
        straight = (name_level(first, candidate.first), name_level(last, candidate.last))
        crossed = (name_level(first, candidate.last), name_level(last, candidate.first))
        # First and last swapped at registration ("morrison nathan" for Nathan Morrison).
        if sum(_NAME_RANK[level] for level in crossed) + 2 <= sum(
            _NAME_RANK[level] for level in straight
        ):
            for name, typed, level in (
                ("first_name", query.first, crossed[0]),
                ("last_name", query.last, crossed[1]),
            ):
                comparison.levels[name] = "swapped" if level == "exact" else (level or "different")
                if level is not None:
                    comparison.terms[name] = typed.replace(" ", "")
            return
    for name, typed, stored in (
        ("first_name", query.first, candidate.first),
        ("last_name", query.last, candidate.last),
    ):
        if not typed or not stored:
            continue
        level = name_level(typed, stored)
        comparison.levels[name] = level or "different"
        if level is not None:
            comparison.terms[name] = typed.replace(" ", "")


def _similar(typed: str, stored: str, threshold: float) -> str:
    if typed == stored or typed.replace(" ", "") == stored.replace(" ", ""):
        return "exact"
    return "similar" if JaroWinkler.similarity(typed, stored) >= threshold else "different"


def _postal_level(typed: str, stored: str) -> str:
    """exact; near (one character changed, or two adjacent ones swapped: 2134 ~ 2143);
    different."""
    if typed == stored:
        return "exact"
    if len(typed) == len(stored):
        changed = [i for i, (a, b) in enumerate(zip(typed, stored, strict=True)) if a != b]
        if len(changed) == 1:
            return "near"
        if len(changed) == 2 and changed[1] == changed[0] + 1:
            i = changed[0]
            if typed[i] == stored[i + 1] and typed[i + 1] == stored[i]:
                return "near"
    return "different"


def compare(query: MatchRecord, candidate: MatchRecord) -> Comparison:
    """The levels, field by field, at which `candidate` agrees with the person `query` is."""
    comparison = Comparison({}, {})
    levels = comparison.levels
    _names(query, candidate, comparison)
    if query.middle and candidate.middle:
        if query.middle == candidate.middle:
            levels["middle_name"] = "exact"
        elif query.middle[0] == candidate.middle[0]:
            levels["middle_name"] = "initial"
        else:
            levels["middle_name"] = "different"
    if query.date_of_birth is not None and candidate.date_of_birth is not None:
        levels["date_of_birth"] = DOB_NAMES[
            dob_agreement([query.date_of_birth], candidate.date_of_birth)
        ]
    if query.sex and candidate.sex and "unknown" not in (query.sex, candidate.sex):
        levels["sex"] = "exact" if query.sex == candidate.sex else "different"
    if query.phones and candidate.phones:
        levels["phone"] = "exact" if query.phones & candidate.phones else "different"
    if query.email and candidate.email:
        levels["email"] = "exact" if query.email == candidate.email else "different"
    if query.postal_code and candidate.postal_code:
        levels["postal_code"] = _postal_level(query.postal_code, candidate.postal_code)
    if query.street and candidate.street:
        levels["address"] = _similar(query.street, candidate.street, STREET_SIMILARITY)
    if query.city and candidate.city:
        levels["city"] = _similar(query.city, candidate.city, CITY_SIMILARITY)
    return comparison
