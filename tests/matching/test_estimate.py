"""EM estimation of m and u: recovers known weights from unlabelled patterns."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from patient_search.matching.compare import MatchRecord, compare
from patient_search.matching.estimate import (
    FIELDS,
    BlockingPass,
    estimate,
    estimate_prior,
    pattern_of,
)
from patient_search.matching.model import DEFAULT_MODEL

TRUE_M = {
    "first_name": {"exact": 0.75, "typo": 0.15, "different": 0.10},
    "last_name": {"exact": 0.80, "typo": 0.12, "different": 0.08},
    "date_of_birth": {"exact": 0.90, "one_digit": 0.04, "different": 0.06},
}
TRUE_U = {
    "first_name": {"exact": 0.01, "typo": 0.01, "different": 0.98},
    "last_name": {"exact": 0.005, "typo": 0.005, "different": 0.99},
    "date_of_birth": {"exact": 0.0005, "one_digit": 0.002, "different": 0.9975},
}


def _draw(rng: random.Random, table: dict[str, float]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _pattern(rng: random.Random, probabilities: dict[str, dict[str, float]]) -> tuple:
    levels = {name: _draw(rng, table) for name, table in probabilities.items()}
    return tuple(levels.get(name) for name in FIELDS)


def _blocked_on_dob(rng: random.Random, matches: int, strangers: int) -> BlockingPass:
    """A date-of-birth pass: every pair shares the date, so only names tell them apart."""
    blocking = BlockingPass(frozenset({"date_of_birth"}))
    for table, count in ((TRUE_M, matches), (TRUE_U, strangers)):
        for _ in range(count):
            names = {k: v for k, v in table.items() if k != "date_of_birth"}
            pattern = list(_pattern(rng, names))
            pattern[FIELDS.index("date_of_birth")] = "exact"
            blocking.patterns[tuple(pattern)] += 1
    return blocking


def test_em_recovers_the_m_of_names_from_unlabelled_pairs() -> None:
    rng = random.Random(7)
    random_pairs = Counter(_pattern(rng, TRUE_U) for _ in range(100_000))
    model = estimate(random_pairs, [_blocked_on_dob(rng, 3000, 6000)])
    for name in ("first_name", "last_name"):
        m = model.details["fields"][name]["m"]
        for level, expected in TRUE_M[name].items():
            assert m[level] == pytest.approx(expected, abs=0.03), (name, level)
    # Exact names weigh log2(m) plus the term's own frequency; typo log2(m / u).
    typo = model.names["last_name"]["typo"]
    assert typo.bits(99.0) == pytest.approx(math.log2(0.12 / 0.005), abs=0.5)
    assert model.names["first_name"]["exact"].offset == pytest.approx(math.log2(0.75), abs=0.1)


def test_a_field_no_pass_could_estimate_keeps_the_default_weights() -> None:
    rng = random.Random(8)
    random_pairs = Counter(_pattern(rng, TRUE_U) for _ in range(100_000))
    model = estimate(random_pairs, [_blocked_on_dob(rng, 3000, 6000)])
    assert "date_of_birth" not in model.details["fields"]  # the only pass was blocked on it
    assert model.fields["date_of_birth"] == DEFAULT_MODEL.fields["date_of_birth"]
    assert model.fields["phone"] == DEFAULT_MODEL.fields["phone"]


def test_an_agreeing_level_never_weighs_less_than_disagreement() -> None:
    rng = random.Random(9)
    random_pairs = Counter(_pattern(rng, TRUE_U) for _ in range(50_000))
    model = estimate(random_pairs, [_blocked_on_dob(rng, 2000, 4000)])
    for name in ("first_name", "last_name"):
        different = model.names[name]["different"].offset
        # "nickname" and "phonetic" never occur in these pairs: their m is tiny.
        assert model.names[name]["nickname"].offset >= different
        assert model.names[name]["phonetic"].offset >= different


def test_the_prior_is_the_expected_true_pairs_over_all_pairs() -> None:
    # 100 unmistakable pairs and 1,000 hopeless ones in a clinic of 1,000 patients.
    prior = estimate_prior([40.0] * 100 + [-40.0] * 1000, 1000)
    assert 2**prior == pytest.approx(100 / (1000 * 999 / 2), rel=0.01)


def test_u_is_corrected_for_true_pairs_among_the_random_ones() -> None:
    rng = random.Random(10)
    # One random pair in 500 is one person: as common as strangers sharing a birthday.
    random_pairs = Counter(
        _pattern(rng, TRUE_M if rng.random() < 0.002 else TRUE_U) for _ in range(200_000)
    )
    first = estimate(random_pairs, [_blocked_on_dob(rng, 3000, 6000)])
    first = type(first)(first.names, first.fields, math.log2(0.002 / 0.998), first.source,
                        first.details)  # fmt: skip
    corrected = estimate(random_pairs, [_blocked_on_dob(rng, 3000, 6000)], first)
    u_before = first.details["fields"]["last_name"]["u"]["exact"]
    u_after = corrected.details["fields"]["last_name"]["u"]["exact"]
    assert u_before > 0.0060  # 0.005 plus the true pairs' 0.8 × 0.002
    assert u_after == pytest.approx(0.005, abs=0.0007)


def test_swapped_names_with_a_typo_are_compared_crosswise() -> None:
    typed = MatchRecord(first="mahoay", last="sebastian")
    stored = MatchRecord(first="sebastian", last="mahony")
    assert compare(typed, stored).levels == {"first_name": "typo", "last_name": "swapped"}
    assert pattern_of(compare(typed, stored))[FIELDS.index("last_name")] == "exact"
    # Straight agreement is never read crosswise.
    assert compare(stored, stored).levels == {"first_name": "exact", "last_name": "exact"}
