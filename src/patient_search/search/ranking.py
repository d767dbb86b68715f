"""How well a patient matches: the rung of every query token, a score, and a total order."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz

from patient_search.search.names import nickname_variants

if TYPE_CHECKING:
    from patient_search.search.evidence import Evidence


class Rung(IntEnum):
    """The ladder, best first; a patient's rung is its worst token's (BR-P018)."""

    MRN = 0
    PHONE = 1
    EMAIL = 2
    EXACT = 3
    PREFIX = 4
    NICKNAME = 5
    PHONETIC = 6
    TYPO = 7
    FUZZY = 8  # some token matched nothing: a partial or merely similar name


MATCH_LABELS = {
    Rung.MRN: "mrn",
    Rung.PHONE: "phone",
    Rung.EMAIL: "email",
    Rung.EXACT: "exact",
    Rung.PREFIX: "prefix",
    Rung.NICKNAME: "nickname",
    Rung.PHONETIC: "phonetic",
    Rung.TYPO: "fuzzy",
    Rung.FUZZY: "fuzzy",
}
RUNG_STEP = 0.1
MAX_BONUS = 0.099

# (rung, rank within rung, matched term, part-of-name flag, last, first, date of birth, id):
# the order of every result list, and what a cursor remembers. Lower sorts first.
SortKey = tuple[int, int, str, int, str, str, str, str]


@dataclass(slots=True)
class TokenCandidates:
    """The vocabulary terms one query token may stand for, by rung."""

    token: str
    nicknames: set[str] = field(default_factory=set)
    phonetic: set[str] = field(default_factory=set)
    typo: set[str] = field(default_factory=set)
    prefix: set[str] = field(default_factory=set)
    similar: set[str] = field(default_factory=set)  # beyond the typo budget, by trigrams
    known: bool = False  # the token is itself a term of the clinic's vocabulary

    @classmethod
    def for_token(cls, token: str) -> TokenCandidates:
        """Candidates known without the vocabulary (nicknames); the rest are added later."""
        return cls(token=token, nicknames=nickname_variants(token))

    def all_terms(self) -> set[str]:
        """Every term that matches this token at some rung."""
        return {self.token} | self.prefix | self.nicknames | self.phonetic | self.typo

    def rung_of(self, terms: frozenset[str] | set[str]) -> Rung | None:
        """The best rung at which a patient with `terms` matches this token, or None.

        Set lookups only: the phonetic and typo sets were already confirmed against the
        clinic's vocabulary, which holds every patient term.
        """
        token = self.token
        if token in terms:
            return Rung.EXACT
        if any(term.startswith(token) for term in terms):
            return Rung.PREFIX
        for rung, candidates in (
            (Rung.NICKNAME, self.nicknames),
            (Rung.PHONETIC, self.phonetic),
            (Rung.TYPO, self.typo),
            (Rung.FUZZY, self.similar),
        ):
            if not candidates.isdisjoint(terms):
                return rung
        return None


@dataclass(slots=True)
class Hit:
    """One ranked result."""

    row: dict[str, Any]
    rung: Rung
    score: float
    sort_key: SortKey
    label: str | None = None  # the `match` shown; None: the rung's label
    evidence: Evidence | None = None


def tiebreak(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """The stable order within equal rank: last, first, date of birth, id."""
    birth: dt.date | None = row.get("date_of_birth")
    return (
        row.get("last_key") or "",
        row.get("first_key") or "",
        (birth or dt.date.max).isoformat(),
        str(row["id"]),
    )


def score_of(rung: Rung, bonus: float) -> float:
    """A number in [0, 1] that never rises down a list sorted by (rung, -bonus)."""
    return round(max(0.0, min(1.0, 0.9 - RUNG_STEP * rung + min(bonus, MAX_BONUS))), 6)


def name_match(
    row: dict[str, Any], tokens: list[TokenCandidates], comma_last: list[str]
) -> tuple[Rung, float]:
    """The rung and within-rung bonus of a patient for the name tokens of a query."""
    terms = frozenset(row.get("name_terms") or ())
    rungs = [candidates.rung_of(terms) for candidates in tokens]
    matched = [r for r in rungs if r is not None]
    rung = Rung.FUZZY if len(matched) < len(rungs) else max(matched, default=Rung.EXACT)
    query = [c.token for c in tokens]
    exact = [c.token for c, r in zip(tokens, rungs, strict=True) if r == Rung.EXACT]
    first = (row.get("first_key") or "").split()
    last = (row.get("last_key") or "").split()
    # The whole name as typed beats the same words in another order: "Anthony Thomas" is
    # Anthony Thomas before Thomas Anthony (with a comma, "Thomas, Anthony" means the same).
    typed_order = last + first if comma_last else first + last
    if query == typed_order:
        bonus = 0.05
    elif sorted(query) == sorted(first + last):
        bonus = 0.04
    else:
        bonus = 0.0
    # A word found in the first or last name beats the same word found in a middle name.
    named = frozenset(first) | frozenset(last) | {"".join(first), "".join(last)}
    in_names = sum(
        1 for c, r in zip(tokens, rungs, strict=True) if r is not None and c.rung_of(named) == r
    )
    bonus += 0.006 * in_names / len(query)
    bonus += 0.03 * len(exact) / len(query)
    bonus += 0.01 * sum(map(len, exact)) / max(1, sum(map(len, query)))
    bonus += 0.009 * name_similarity(row, tokens)
    return rung, bonus


def name_similarity(row: dict[str, Any], tokens: list[TokenCandidates]) -> float:
    """Order-insensitive similarity in [0, 1] of the typed name and the patient's name."""
    typed = " ".join(c.token for c in tokens)
    name = " ".join(filter(None, (row.get("first_key"), row.get("last_key"))))
    return float(fuzz.token_sort_ratio(typed, name)) / 100


def rank_rows(
    rows: list[dict[str, Any]],
    tokens: list[TokenCandidates],
    comma_last: list[str],
    identifier_rungs: dict[uuid.UUID, Rung] | None = None,
) -> list[Hit]:
    """Hits for rows, best first; an identifier match outranks any name match."""
    hits: list[Hit] = []
    for row in rows:
        if tokens:
            rung, bonus = name_match(row, tokens, comma_last)
        else:
            rung, bonus = Rung.EXACT, 0.0
        identifier = (identifier_rungs or {}).get(row["id"])
        if identifier is not None and identifier < rung:
            rung = identifier
        rank = -round(bonus * 1_000_000)
        hits.append(Hit(row, rung, score_of(rung, bonus), (rung, rank, "", 0, *tiebreak(row))))
    hits.sort(key=lambda hit: hit.sort_key)
    return hits
