"""How much each level of a comparison weighs, the match probability and the grade.

A model gives every (field, level) a weight in bits, log2(m / u): m is how often the level
is seen when two records are one person, u when they are two. Names weigh by how common the
typed name is in the clinic: an exact agreement is worth log2(N / df), the term frequency
adjustment of Fellegi–Sunter, plus log2(m), its share of true pairs (decision 0019). The bits
of a pair become a probability against the prior odds that two of the clinic's records are
one person; grades are thresholds on it (decision 0018).

`DEFAULT_MODEL` holds reasoned weights, used until the clinic's own are estimated
(`estimate.py`, run by `patient-search duplicates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from patient_search.matching.compare import Comparison
from patient_search.search.evidence import (
    DOB_DIFFERENT_BITS,
    DOB_EXACT_BITS,
    DOB_NEAR_BITS,
    TermWeights,
)

Grade = Literal["certain", "probable", "possible"]
GRADES: tuple[Grade, ...] = ("certain", "probable", "possible")

NAME_FIELDS = ("first_name", "last_name")
HOUSEHOLD_FIELDS = frozenset({"phone", "email"})
# A nickname is not enough: twins are named Thomas and Tom, Katherine and Cathy.
CERTAIN_FIRST_NAMES = frozenset({"exact", "swapped"})
# Probability thresholds of the grades (decision 0018).
CERTAIN_AT = 0.999
PROBABLE_AT = 0.5
POSSIBLE_AT = 0.001  # a one-in-a-thousand chance is worth a glance at the desk


@dataclass(frozen=True, slots=True)
class NameWeight:
    """A name level's bits: `scale` × the typed name's log2(N / df), plus `offset`."""

    scale: float
    offset: float = 0.0

    def bits(self, term_bits: float) -> float:
        return self.scale * term_bits + self.offset


@dataclass(frozen=True, slots=True)
class MatchModel:
    """Weights of every comparison level, and the prior odds of a match.

    `prior_bits` is log2 of the prior odds that two records of the clinic are one person;
    None means 1 in the clinic's size (one duplicate per patient at most)."""

    names: Mapping[str, Mapping[str, NameWeight]]
    fields: Mapping[str, Mapping[str, float]]
    prior_bits: float | None = None
    source: str = "default"
    details: Mapping[str, Any] = field(default_factory=dict)

    def bits(self, comparison: Comparison, weights: TermWeights) -> float:
        """The evidence of a comparison, in bits; a level the model lacks weighs nothing.

        A shared phone and a shared email count once, the stronger: a household shares
        both, so summing them as independent would make two relatives one person."""
        total = 0.0
        household = 0.0
        for name, level in comparison.levels.items():
            if name in NAME_FIELDS:
                weight = self.names[name].get("exact" if level == "swapped" else level)
                if weight is not None:
                    term = comparison.terms.get(name)
                    total += weight.bits(weights.bits(term) if term else 0.0)
            elif name in HOUSEHOLD_FIELDS:
                bits = self.fields.get(name, {}).get(level, 0.0)
                if bits > 0:
                    household = max(household, bits)
                else:
                    total += bits
            else:
                total += self.fields.get(name, {}).get(level, 0.0)
        return total + household

    def prior(self, clinic_size: int) -> float:
        if self.prior_bits is not None:
            return self.prior_bits
        return -math.log2(max(clinic_size, 2))

    def probability(self, comparison: Comparison, weights: TermWeights) -> float:
        """The match probability of the pair."""
        return probability_of(self.bits(comparison, weights) + self.prior(weights.clinic_size))

    def grade(self, comparison: Comparison, probability: float) -> Grade | None:
        """The grade of the pair, or None below `possible`.

        `certain` also needs the first names, when both are given, to agree exactly (or
        swapped with the last name) and the dates of birth, when both are given, to be the
        same: twins share a surname, a date and an address, and often similar first names
        (Michael and Mitchell, Thomas and Tom); only the first name tells them apart."""
        first = comparison.levels.get("first_name", "exact")
        born = comparison.levels.get("date_of_birth", "exact")
        if probability >= CERTAIN_AT and first in CERTAIN_FIRST_NAMES and born == "exact":
            return "certain"
        if probability >= PROBABLE_AT:
            return "probable"
        if probability >= POSSIBLE_AT:
            return "possible"
        return None

    def to_json(self) -> dict[str, Any]:
        """The model as stored in `match_models.model` (weights, prior, m and u)."""
        return {
            "names": {
                name: {level: [w.scale, w.offset] for level, w in levels.items()}
                for name, levels in self.names.items()
            },
            "fields": {name: dict(levels) for name, levels in self.fields.items()},
            "prior_bits": self.prior_bits,
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchModel:
        """A stored model over the default one: a level it lacks keeps its default weight."""
        names = {
            name: {
                **DEFAULT_MODEL.names[name],
                **{
                    level: NameWeight(float(scale), float(offset))
                    for level, (scale, offset) in data["names"].get(name, {}).items()
                },
            }
            for name in NAME_FIELDS
        }
        fields = {
            name: {**levels, **{k: float(v) for k, v in data["fields"].get(name, {}).items()}}
            for name, levels in DEFAULT_MODEL.fields.items()
        }
        prior = data.get("prior_bits")
        return cls(
            names,
            fields,
            float(prior) if prior is not None else None,
            "estimated",
            data.get("details", {}),
        )


def probability_of(log_odds: float) -> float:
    """1 / (1 + 2^-log_odds), without overflow."""
    if log_odds > 60:
        return 1.0
    if log_odds < -60:
        return 0.0
    return 1.0 / (1.0 + math.pow(2.0, -log_odds))


def _default_names(different: float) -> dict[str, NameWeight]:
    # Fractions of the exact weight kept at each weaker level, as in search's evidence. A
    # name given on both sides that agrees at no level: replaced names are common in
    # registration data (about one in seven), so this is weak evidence against.
    return {
        "exact": NameWeight(1.0),
        "nickname": NameWeight(0.8),
        "typo": NameWeight(0.7),
        "phonetic": NameWeight(0.6),
        "different": NameWeight(0.0, different),
    }


DEFAULT_MODEL = MatchModel(
    names={"first_name": _default_names(-3.0), "last_name": _default_names(-4.0)},
    fields={
        "middle_name": {"exact": 2.0, "initial": 1.0, "different": -1.0},
        "date_of_birth": {
            "exact": DOB_EXACT_BITS,
            "transposed": DOB_NEAR_BITS,
            "day_month_swapped": DOB_NEAR_BITS,
            "one_digit": DOB_NEAR_BITS,
            "different": DOB_DIFFERENT_BITS,
        },
        "sex": {"exact": 0.5, "different": -3.0},
        # A shared number or address: a household at worst. A different one: people change
        # numbers, so it says nothing.
        "phone": {"exact": 9.0, "different": 0.0},
        "email": {"exact": 9.0, "different": 0.0},
        "postal_code": {"exact": 5.0, "near": 1.0, "different": -1.5},
        "address": {"exact": 7.0, "similar": 4.0, "different": -1.5},
        "city": {"exact": 2.0, "similar": 1.0, "different": -1.0},
    },
)
