"""Ranking by evidence: every typed field that agrees adds weight, rarer names more.

A Fellegi–Sunter style sum of log2 Bayes factors (decision 0017). A name token that agrees
exactly with a term held by ``df`` of the clinic's ``N`` patients weighs ``log2(N / df)``
bits; agreeing at a weaker level (prefix, nickname, sound-alike, typo, trigram-similar)
keeps a fraction of that; agreeing with nothing costs ``MISSING_TOKEN_BITS``. A typed date
of birth adds ``DOB_EXACT_BITS`` when it is the patient's, less when it is a near miss
(transposed digits, day and month swapped, one digit changed), and costs
``DOB_DIFFERENT_BITS`` when it is neither; a patient with no date on file neither gains nor
loses.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from types import MappingProxyType

from patient_search.patients.schemas import EARLIEST_BIRTH
from patient_search.search.names import name_tokens
from patient_search.search.ranking import Rung, TokenCandidates

# Fraction of a token's exact-agreement weight kept at each weaker level: how much likelier
# the level is for the same person than for a stranger, relative to exact agreement.
LEVEL_FACTORS: Mapping[Rung, float] = {
    Rung.EXACT: 1.0,
    Rung.PREFIX: 0.75,
    Rung.NICKNAME: 0.8,
    Rung.PHONETIC: 0.7,
    Rung.TYPO: 0.7,
    Rung.FUZZY: 0.45,  # trigram-similar, beyond the typo budget
}
LEVEL_NAMES: Mapping[Rung, str] = {
    Rung.EXACT: "exact",
    Rung.PREFIX: "prefix",
    Rung.NICKNAME: "nickname",
    Rung.PHONETIC: "phonetic",
    Rung.TYPO: "typo",
    Rung.FUZZY: "similar",
}
# A typed name part the patient does not have: Febrl-style registration data replaces or
# drops about one name part in seven, so disagreement is ~1/7 as likely for the same person.
MISSING_TOKEN_BITS = -2.8
# A date of birth is shared by ~1 in 33,000 strangers (90 years of dates); a clerk types the
# right one ~95 % of the time, a near miss (one of ~80 variants) ~3 %, anything else ~2 %.
DOB_EXACT_BITS = 14.0
DOB_NEAR_BITS = 4.0
DOB_DIFFERENT_BITS = -5.6
# Bounds of a name token's exact weight: an unknown token (no patient holds it) weighs as
# a name held by one patient, and no token weighs less than one bit.
MIN_TOKEN_BITS = 1.0
# Weights are counted up to this many postings per term; commoner terms weigh the same.
FREQUENCY_CAP = 5000


class DobAgreement(IntEnum):
    """How a typed date of birth compares with the patient's, best first."""

    EXACT = 0
    TRANSPOSED = 1
    DAY_MONTH_SWAPPED = 2
    ONE_DIGIT = 3
    DIFFERENT = 4
    UNKNOWN = 5  # the patient has no date on file


DOB_NAMES: Mapping[DobAgreement, str] = {
    DobAgreement.EXACT: "exact",
    DobAgreement.TRANSPOSED: "transposed",
    DobAgreement.DAY_MONTH_SWAPPED: "day_month_swapped",
    DobAgreement.ONE_DIGIT: "one_digit",
    DobAgreement.DIFFERENT: "different",
}


def _valid(text: str) -> dt.date | None:
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def near_dates(typed: dt.date) -> Mapping[dt.date, DobAgreement]:
    """The valid dates a clerk may have meant when typing `typed`, with how they differ.

    Adjacent digits of YYYYMMDD transposed (1967 ↔ 1976), day and month swapped, and any
    one digit changed (1967 ↔ 1961); only dates a patient can be born on (1900 to today):
    about 40, each found through the date-of-birth index.
    """
    digits = typed.strftime("%Y%m%d")
    found: dict[dt.date, DobAgreement] = {}
    latest = dt.date.today()

    def add(text: str, how: DobAgreement) -> None:
        candidate = _valid(text)
        if (
            candidate is not None
            and EARLIEST_BIRTH <= candidate <= latest
            and candidate != typed
            and how < found.get(candidate, 99)
        ):
            found[candidate] = how

    for i in range(len(digits) - 1):
        if digits[i] != digits[i + 1]:
            add(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :], DobAgreement.TRANSPOSED)
    add(digits[:4] + digits[6:] + digits[4:6], DobAgreement.DAY_MONTH_SWAPPED)
    for i, old in enumerate(digits):
        for new in "0123456789":
            if new != old:
                add(digits[:i] + new + digits[i + 1 :], DobAgreement.ONE_DIGIT)
    return MappingProxyType(found)


def dob_agreement(typed: Sequence[dt.date], stored: dt.date | None) -> DobAgreement:
    """The best agreement of any typed date with the stored one."""
    if stored is None:
        return DobAgreement.UNKNOWN
    best = DobAgreement.DIFFERENT
    for date in typed:
        if date == stored:
            return DobAgreement.EXACT
        best = min(best, near_dates(date).get(stored, DobAgreement.DIFFERENT))
    return best


def dob_bits(agreement: DobAgreement) -> float:
    """The evidence of a date-of-birth comparison, in bits."""
    if agreement is DobAgreement.EXACT:
        return DOB_EXACT_BITS
    if agreement is DobAgreement.DIFFERENT:
        return DOB_DIFFERENT_BITS
    if agreement is DobAgreement.UNKNOWN:
        return 0.0
    return DOB_NEAR_BITS


@dataclass(frozen=True, slots=True)
class TermWeights:
    """Exact-agreement weights of name tokens, from the clinic's own term frequencies."""

    clinic_size: int
    frequencies: Mapping[str, int] = field(default_factory=dict)

    def bits(self, token: str) -> float:
        """log2(N / df): how much a patient holding `token` stands out in the clinic."""
        size = max(self.clinic_size, 2)
        df = min(max(self.frequencies.get(token, 0), 1), size)
        return max(MIN_TOKEN_BITS, math.log2(size / df))


@dataclass(frozen=True, slots=True)
class TokenAgreement:
    """How one typed token agreed with a patient: the level, the field, the term."""

    token: str
    level: Rung
    field: str  # first_name, middle_name or last_name
    term: str


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything ranking knows about one candidate for one query."""

    bits: float
    max_bits: float
    agreements: tuple[TokenAgreement, ...]
    missing: int  # typed name tokens that agreed with nothing
    dob: DobAgreement | None  # None: no date was typed
    all_exact: bool

    @property
    def worst_level(self) -> Rung:
        return max((a.level for a in self.agreements), default=Rung.EXACT)

    def matched(self) -> dict[str, str]:
        """Field by field, how it agreed: {"last_name": "exact", "date_of_birth": "transposed"}."""
        result: dict[str, str] = {}
        for agreement in sorted(self.agreements, key=lambda a: -a.level):
            result[agreement.field] = LEVEL_NAMES[agreement.level]
        if self.dob is not None and self.dob is not DobAgreement.UNKNOWN:
            result["date_of_birth"] = DOB_NAMES[self.dob]
        return result


@dataclass(frozen=True, slots=True)
class NameFields:
    """A candidate's folded name tokens per field, and every term it is findable by."""

    first: tuple[str, ...]
    last: tuple[str, ...]
    terms: frozenset[str]

    @classmethod
    def of(cls, first_key: str | None, last_key: str | None, terms: Iterable[str]) -> NameFields:
        return cls(
            tuple((first_key or "").split()), tuple((last_key or "").split()), frozenset(terms)
        )

    def field_of(self, term: str) -> str:
        """Which field holds `term`: a word of it, or a join of its words."""
        if term in self.last or term in "".join(self.last):
            return "last_name"
        if term in self.first or term in "".join(self.first):
            return "first_name"
        return "middle_name"


def _agreement(candidates: TokenCandidates, name: NameFields) -> TokenAgreement | None:
    level = candidates.rung_of(name.terms)
    if level is None:
        return None
    token = candidates.token
    if level is Rung.EXACT:
        term = token
    elif level is Rung.PREFIX:
        term = min(t for t in name.terms if t.startswith(token))
    else:
        pool = {
            Rung.NICKNAME: candidates.nicknames,
            Rung.PHONETIC: candidates.phonetic,
            Rung.TYPO: candidates.typo,
            Rung.FUZZY: candidates.similar,
        }[level]
        term = min(pool & name.terms)
    return TokenAgreement(token, level, name.field_of(term), term)


def weigh(
    name: NameFields,
    segmentations: Sequence[Sequence[TokenCandidates]],
    weights: TermWeights,
    typed_dates: Sequence[dt.date],
    stored_dob: dt.date | None,
) -> Evidence:
    """The candidate's evidence under the best reading of the typed tokens.

    A segmentation is one reading of the box: the tokens as typed first, then with two
    adjacent tokens joined (``jayde n`` → ``jayden``), tried only while a typed word agrees
    with nothing and never "exact on every field". Each token agrees at its best level with
    any of the candidate's terms.
    """
    dob = dob_agreement(typed_dates, stored_dob) if typed_dates else None
    dob_weight = dob_bits(dob) if dob is not None else 0.0
    best: Evidence | None = None
    for index, tokens in enumerate(segmentations):
        if index and best is not None and best.missing == 0:
            # A joined reading stands in only for typed words that agree with nothing:
            # "jo an" is Jo Anderson before it is Joan.
            break
        bits = dob_weight
        max_bits = DOB_EXACT_BITS if typed_dates else 0.0
        agreements: list[TokenAgreement] = []
        missing = 0
        for candidates in tokens:
            exact_bits = weights.bits(candidates.token)
            max_bits += exact_bits
            agreement = _agreement(candidates, name)
            if agreement is None:
                missing += 1
                bits += MISSING_TOKEN_BITS
            else:
                agreements.append(agreement)
                bits += exact_bits * LEVEL_FACTORS[agreement.level]
        all_exact = (
            index == 0  # the words as typed, not as rejoined
            and missing == 0
            and all(a.level is Rung.EXACT for a in agreements)
            and dob in (None, DobAgreement.EXACT)
        )
        evidence = Evidence(
            bits, max_bits, tuple(agreements), missing, dob, all_exact and bool(agreements)
        )
        if best is None or _better(evidence, best):
            best = evidence
    if best is None:
        return Evidence(dob_weight, DOB_EXACT_BITS, (), 0, dob, dob is DobAgreement.EXACT)
    return best


def _better(a: Evidence, b: Evidence) -> bool:
    return (a.all_exact, a.missing == 0, a.bits) > (b.all_exact, b.missing == 0, b.bits)


def highlights(
    agreements: Sequence[TokenAgreement], fields: Mapping[str, str | None]
) -> dict[str, list[tuple[int, int]]]:
    """Character spans of each displayed name field that the query matched.

    A word of the field is marked when it is (or, for a compound, is part of) the term a
    token agreed with; a prefix match marks only the typed letters.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    for field_name, text in fields.items():
        if not text:
            continue
        for agreement in agreements:
            if agreement.field != field_name:
                continue
            for start, end, folded in _words(text):
                if agreement.level is Rung.PREFIX and folded.startswith(agreement.token):
                    span = (start, start + len(agreement.token))
                elif folded == agreement.term or (len(folded) > 1 and folded in agreement.term):
                    span = (start, end)
                else:
                    continue
                if span not in spans.setdefault(field_name, []):
                    spans[field_name].append(span)
    for found in spans.values():
        found.sort()
    return spans


def _words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, folded) of each word of `text`, positions in the original string."""
    words: list[tuple[int, int, str]] = []
    start: int | None = None
    for index, char in enumerate(text + " "):
        if char.isalnum():
            if start is None:
                start = index
        elif start is not None:
            folded = "".join(name_tokens(text[start:index]))
            if folded:
                words.append((start, index, folded))
            start = None
    return words
