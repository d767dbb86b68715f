"""Grades of the default model on the pairs that make duplicate checks fail: twins, particles."""

from __future__ import annotations

import datetime as dt

from patient_search.matching.compare import MatchRecord, compare
from patient_search.matching.model import DEFAULT_MODEL
from patient_search.search.evidence import TermWeights

BORN = dt.date(1964, 7, 7)
WEIGHTS = TermWeights(1_000_000, {"montero": 40, "thomas": 9000, "tom": 900})


def _record(first: str) -> MatchRecord:
    """A member of the Montero household: its phone, its email, one birthday."""
    return MatchRecord(
        first=first,
        last="montero",
        date_of_birth=BORN,
        phones=frozenset({"+15551234567"}),
        email="montero@example.org",
    )


def test_twins_named_by_nickname_are_never_certain() -> None:
    comparison = compare(_record("thomas"), _record("tom"))
    assert comparison.levels["first_name"] == "nickname"
    probability = DEFAULT_MODEL.probability(comparison, WEIGHTS)
    assert probability >= 0.999  # everything else agrees
    assert DEFAULT_MODEL.grade(comparison, probability) == "probable"
    same = compare(_record("thomas"), _record("thomas"))
    assert DEFAULT_MODEL.grade(same, DEFAULT_MODEL.probability(same, WEIGHTS)) == "certain"


def test_a_shared_particle_is_not_a_surname_agreement() -> None:
    compound = compare(MatchRecord(last="van den brink"), MatchRecord(last="van este"))
    assert compound.levels["last_name"] == "different"
    part = compare(MatchRecord(last="garcia"), MatchRecord(last="garcia lopez"))
    assert part.levels["last_name"] == "typo"


def test_a_shared_phone_and_email_count_once() -> None:
    both = compare(_record("ana"), _record("luis"))
    phone_only = compare(
        _record("ana"), MatchRecord(first="luis", last="montero", date_of_birth=BORN,
                                    phones=frozenset({"+15551234567"}))
    )  # fmt: skip
    assert both.levels["email"] == "exact" and "email" not in phone_only.levels
    assert DEFAULT_MODEL.bits(both, WEIGHTS) == DEFAULT_MODEL.bits(phone_only, WEIGHTS)
