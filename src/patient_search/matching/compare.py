"""Is this the same person? Field-by-field comparison of two records, in bits, and a grade.

The same Fellegi–Sunter style as search's evidence (decision 0017), over every field a
registration has: names at exact / nickname / typo / sound-alike levels, the date of birth
exact / near / different, sex, phone, email and the address parts. A field missing on either
side neither helps nor hurts. The bits become a match probability against the prior odds of
one patient among the clinic's N; grades are thresholds on it (decision 0018).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz.distance import JaroWinkler

from patient_search.search.evidence import DOB_NAMES, TermWeights, dob_agreement, dob_bits
from patient_search.search.names import (
    fold,
    name_tokens,
    nickname_variants,
    phonetic_codes,
    within_typo_budget,
)

Grade = Literal["certain", "probable", "possible"]
GRADES: tuple[Grade, ...] = ("certain", "probable", "possible")

# Fraction of a name's exact weight kept at each weaker level, as in search's evidence.
NAME_LEVELS: Mapping[str, float] = {
    "exact": 1.0,
    "nickname": 0.8,
    "typo": 0.7,
    "phonetic": 0.6,
}
# A name given on both sides that agrees at no level: replaced names are common in
# registration data (about one in seven), so this is weak evidence against.
FIRST_NAME_DIFFERENT = -3.0
LAST_NAME_DIFFERENT = -4.0
MIDDLE_AGREES, MIDDLE_INITIAL_AGREES, MIDDLE_DIFFERENT = 2.0, 1.0, -1.0
SEX_AGREES, SEX_DIFFERENT = 0.5, -3.0
PHONE_AGREES = 9.0  # a shared number: a household at worst
EMAIL_AGREES = 9.0
POSTAL_AGREES, POSTAL_DIFFERENT = 5.0, -1.5
CITY_AGREES, CITY_SIMILAR, CITY_DIFFERENT = 2.0, 1.0, -1.0
STREET_AGREES, STREET_SIMILAR, STREET_DIFFERENT = 7.0, 4.0, -1.5
STREET_SIMILARITY = 0.88  # Jaro-Winkler: "wallaby place" ~ "wallaby pl"
CITY_SIMILARITY = 0.9
CERTAIN_FIRST_NAMES = frozenset({"exact", "nickname", "swapped"})
# Probability thresholds of the grades (decision 0018).
CERTAIN_AT = 0.999
PROBABLE_AT = 0.95
POSSIBLE_AT = 0.001  # a one-in-a-thousand chance is worth a glance at the desk


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
    """The evidence that two records are one person."""

    bits: float
    matched: dict[str, str]

    def probability(self, clinic_size: int) -> float:
        """The match probability against prior odds of 1 in the clinic's size."""
        log_odds = self.bits - math.log2(max(clinic_size, 2))
        if log_odds > 60:
            return 1.0
        return 1.0 / (1.0 + math.pow(2.0, -log_odds))

    def grade(self, clinic_size: int) -> Grade | None:
        """The grade of the pair, or None below `possible`.

        `certain` also needs the first names, when both are given, to agree exactly (or as
        nickname and name, or swapped with the last name) and the dates of birth, when both
        are given, to be the same: twins share a surname, a date and an address, and often
        similar first names (Michael, Mitchell); only the first name tells them apart."""
        p = self.probability(clinic_size)
        first = self.matched.get("first_name", "exact")
        born = self.matched.get("date_of_birth", "exact")
        unmistakable = first in CERTAIN_FIRST_NAMES and born == "exact"
        if p >= CERTAIN_AT and unmistakable:
            return "certain"
        if p >= PROBABLE_AT:
            return "probable"
        if p >= POSSIBLE_AT:
            return "possible"
        return None


def _name_level(typed: str, stored: str) -> str | None:
    """How a typed name agrees with a stored one: a level of NAME_LEVELS, or None."""
    if typed == stored or typed.replace(" ", "") == stored.replace(" ", ""):
        return "exact"
    typed_tokens, stored_tokens = typed.split(), stored.split()
    if set(typed_tokens) & set(stored_tokens):
        return "typo"  # one part of a compound agrees ("garcia" ~ "garcia lopez")
    if any(stored in nickname_variants(token) for token in typed_tokens):
        return "nickname"
    if within_typo_budget(typed.replace(" ", ""), stored.replace(" ", "")):
        return "typo"
    if JaroWinkler.similarity(typed, stored) >= 0.92:
        return "typo"
    if phonetic_codes(typed.replace(" ", "")) & phonetic_codes(stored.replace(" ", "")):
        return "phonetic"
    return None


def _names(
    query: MatchRecord, candidate: MatchRecord, weights: TermWeights, matched: dict[str, str]
) -> float:
    bits = 0.0
    pairs = [
        (query.first, candidate.first, "first_name"),
        (query.last, candidate.last, "last_name"),
    ]
    # First and last swapped at registration: compare them crosswise when that agrees better.
    crossed = (
        query.first
        and query.last
        and _name_level(query.first, candidate.last) == "exact"
        and _name_level(query.last, candidate.first) == "exact"
        and _name_level(query.first, candidate.first) != "exact"
    )
    for typed, stored, name in pairs:
        if not typed or not stored:
            continue
        other = candidate.last if name == "first_name" else candidate.first
        level = _name_level(typed, other) if crossed else _name_level(typed, stored)
        weight = weights.bits(typed.replace(" ", ""))
        if level is None:
            matched[name] = "different"
            bits += FIRST_NAME_DIFFERENT if name == "first_name" else LAST_NAME_DIFFERENT
        else:
            matched[name] = "swapped" if crossed else level
            bits += weight * NAME_LEVELS[level]
    if query.middle and candidate.middle:
        if query.middle == candidate.middle:
            matched["middle_name"], bits = "exact", bits + MIDDLE_AGREES
        elif query.middle[0] == candidate.middle[0]:
            matched["middle_name"], bits = "initial", bits + MIDDLE_INITIAL_AGREES
        else:
            matched["middle_name"], bits = "different", bits + MIDDLE_DIFFERENT
    return bits


def _address(query: MatchRecord, candidate: MatchRecord, matched: dict[str, str]) -> float:
    bits = 0.0
    if query.postal_code and candidate.postal_code:
        same = query.postal_code == candidate.postal_code
        matched["postal_code"] = "exact" if same else "different"
        bits += POSTAL_AGREES if same else POSTAL_DIFFERENT
    for typed, stored, name, agree, similar, differ, threshold in (
        (query.street, candidate.street, "address", STREET_AGREES, STREET_SIMILAR,
         STREET_DIFFERENT, STREET_SIMILARITY),
        (query.city, candidate.city, "city", CITY_AGREES, CITY_SIMILAR, CITY_DIFFERENT,
         CITY_SIMILARITY),
    ):  # fmt: skip
        if not typed or not stored:
            continue
        if typed == stored or typed.replace(" ", "") == stored.replace(" ", ""):
            matched[name], bits = "exact", bits + agree
        elif JaroWinkler.similarity(typed, stored) >= threshold:
            matched[name], bits = "similar", bits + similar
        else:
            matched[name], bits = "different", bits + differ
    return bits


def compare(query: MatchRecord, candidate: MatchRecord, weights: TermWeights) -> Comparison:
    """The evidence, field by field, that `candidate` is the person `query` describes."""
    matched: dict[str, str] = {}
    bits = _names(query, candidate, weights, matched)
    if query.date_of_birth is not None and candidate.date_of_birth is not None:
        agreement = dob_agreement([query.date_of_birth], candidate.date_of_birth)
        matched["date_of_birth"] = DOB_NAMES[agreement]
        bits += dob_bits(agreement)
    if query.sex and candidate.sex and "unknown" not in (query.sex, candidate.sex):
        same = query.sex == candidate.sex
        matched["sex"] = "exact" if same else "different"
        bits += SEX_AGREES if same else SEX_DIFFERENT
    if query.phones and candidate.phones and query.phones & candidate.phones:
        matched["phone"], bits = "exact", bits + PHONE_AGREES
    if query.email and candidate.email and query.email == candidate.email:
        matched["email"], bits = "exact", bits + EMAIL_AGREES
    bits += _address(query, candidate, matched)
    return Comparison(bits, matched)
