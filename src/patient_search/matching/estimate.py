"""The clinic's own weights: m and u of every comparison level, estimated without labels.

As Splink and fastLink do (decision 0019):
- **u** (how often a level is seen between two different people) is counted on random pairs
  of the clinic's patients. A few of those pairs are one person, and where duplicates are
  many they can be most of the pairs that agree on the date of birth, so once m and the
  prior are known the counts are corrected for them: u = (r − λ·m) / (1 − λ).
- **m** (how often it is seen between two records of one person) is estimated by EM on the
  pairs of each blocking pass, under conditional independence, with u held fixed. A pass
  blocked on a field says nothing of that field (every pair agrees on it), so the field is
  left out of that pass and its m comes from the other passes.
- **The prior**: the expected number of true pairs among those compared (the sum of their
  match probabilities, iterated to a fixed point) over all pairs of the clinic.

A field with too little evidence keeps `DEFAULT_MODEL`'s weights; an agreeing level never
weighs less than disagreement.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from patient_search.matching.compare import Comparison
from patient_search.matching.model import (
    DEFAULT_MODEL,
    NAME_FIELDS,
    MatchModel,
    NameWeight,
    probability_of,
)

FIELDS: tuple[str, ...] = NAME_FIELDS + tuple(DEFAULT_MODEL.fields)
LEVELS: Mapping[str, tuple[str, ...]] = {
    **{name: tuple(DEFAULT_MODEL.names[name]) for name in NAME_FIELDS},
    **{name: tuple(levels) for name, levels in DEFAULT_MODEL.fields.items()},
}
Pattern = tuple[str | None, ...]
NAME_IDENTITY = frozenset(NAME_FIELDS)
IDENTITY_FIELDS = (*NAME_FIELDS, "date_of_birth")
EM_ITERATIONS = 40
EM_TOLERANCE = 1e-5
# A field is estimated only from at least this many expected true pairs and random pairs
# where both records have it; below that the default weights are kept.
MIN_MATCHED_PAIRS = 30.0
MIN_RANDOM_PAIRS = 1000
# Pseudo-counts toward the starting m: a level unseen among true pairs gets a small m.
SMOOTHING = 1.0
PRIOR_ITERATIONS = 30


def pattern_of(comparison: Comparison) -> Pattern:
    """The comparison as one level per field of FIELDS (None: not compared)."""
    levels = comparison.levels
    return tuple("exact" if (level := levels.get(name)) == "swapped" else level for name in FIELDS)


@dataclass(slots=True)
class BlockingPass:
    """The comparison patterns of one blocking pass, and the fields its key is made of."""

    key_fields: frozenset[str]
    patterns: Counter[Pattern] = field(default_factory=Counter)


def _starting_m(name: str) -> dict[str, float]:
    levels = LEVELS[name]
    share = 0.1 / max(len(levels) - 1, 1)
    return {level: 0.9 if level == "exact" else share for level in levels}


def _u(
    random_patterns: Counter[Pattern], previous: MatchModel | None
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """u of every level; with a previous estimate, less the true pairs among the random."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for pattern, times in random_patterns.items():
        for name, level in zip(FIELDS, pattern, strict=True):
            if level is not None:
                counts[name][level] += times
    u, seen = {}, {}
    for name in FIELDS:
        total = sum(counts[name].values())
        seen[name] = total
        levels = LEVELS[name]
        floor = 0.5 / (total + 0.5 * len(levels))
        observed = {level: counts[name][level] / total if total else 0.0 for level in levels}
        estimated = previous.details.get("fields", {}).get(name) if previous else None
        if estimated and previous and previous.prior_bits is not None:
            share = probability_of(previous.prior_bits)
            m = estimated["m"]
            observed = {
                level: (observed[level] - share * m[level]) / (1 - share) for level in levels
            }
        raw = {level: max(observed[level], floor) for level in levels}
        scale = sum(raw.values())
        u[name] = {level: value / scale for level, value in raw.items()}
    return u, seen


def _em(
    blocking: BlockingPass, u: Mapping[str, Mapping[str, float]]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """m of every field outside the pass's key, and the expected true pairs behind each."""
    used = [i for i, name in enumerate(FIELDS) if name not in blocking.key_fields]
    m = {FIELDS[i]: _starting_m(FIELDS[i]) for i in used}
    share = 0.1
    evidence: dict[str, float] = {}
    patterns = list(blocking.patterns.items())
    total = sum(blocking.patterns.values())
    if not total:
        return {}, {}
    for _ in range(EM_ITERATIONS):
        sums: dict[str, defaultdict[str, float]] = {FIELDS[i]: defaultdict(float) for i in used}
        matched_total = 0.0
        prior = math.log2(share / (1 - share))
        for pattern, times in patterns:
            log_odds = prior
            for i in used:
                level = pattern[i]
                if level is not None:
                    name = FIELDS[i]
                    log_odds += math.log2(m[name][level] / u[name][level])
            weight = probability_of(log_odds) * times
            matched_total += weight
            for i in used:
                if (seen_level := pattern[i]) is not None:
                    sums[FIELDS[i]][seen_level] += weight
        new_share = min(max(matched_total / total, 1e-9), 1 - 1e-9)
        change = abs(new_share - share)
        share = new_share
        for i in used:
            name = FIELDS[i]
            start = _starting_m(name)
            seen = sum(sums[name].values())
            evidence[name] = seen
            m[name] = {
                level: (sums[name][level] + SMOOTHING * start[level]) / (seen + SMOOTHING)
                for level in LEVELS[name]
            }
        if change < EM_TOLERANCE:
            break
    return m, evidence


def _describes_duplicates(m: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether EM's "same person" class agrees on identity more often than not."""
    return all(m[name]["exact"] > m[name]["different"] for name in IDENTITY_FIELDS if name in m)


def estimate(
    random_patterns: Counter[Pattern],
    passes: Iterable[BlockingPass],
    previous: MatchModel | None = None,
) -> MatchModel:
    """The clinic's model, its prior still the default (see `estimate_prior`).

    With `previous` (an estimate and its prior), u is first corrected for the true pairs
    among the random ones."""
    u, random_seen = _u(random_patterns, previous)
    estimates: dict[str, list[tuple[float, dict[str, float]]]] = defaultdict(list)
    for blocking in passes:
        if NAME_IDENTITY <= blocking.key_fields:
            continue
        pass_m, evidence = _em(blocking, u)
        if not _describes_duplicates(pass_m):
            continue
        for name, levels in pass_m.items():
            if evidence.get(name, 0.0) >= MIN_MATCHED_PAIRS:
                estimates[name].append((evidence[name], levels))
    names = dict(DEFAULT_MODEL.names)
    fields = {name: dict(levels) for name, levels in DEFAULT_MODEL.fields.items()}
    estimated: dict[str, dict[str, dict[str, float]]] = {}
    for name in FIELDS:
        found = estimates.get(name)
        if not found or random_seen[name] < MIN_RANDOM_PAIRS:
            continue
        weight_sum = sum(evidence for evidence, _ in found)
        m = {
            level: sum(evidence * levels[level] for evidence, levels in found) / weight_sum
            for level in LEVELS[name]
        }
        bits = {level: math.log2(m[level] / u[name][level]) for level in LEVELS[name]}
        floor = bits["different"]
        bits = {level: max(value, floor) for level, value in bits.items()}
        estimated[name] = {"m": m, "u": u[name]}
        if name in NAME_FIELDS:
            # Exact names weigh by the typed name's own frequency: log2(m / tf).
            names[name] = {
                level: NameWeight(1.0, math.log2(m[level]))
                if level == "exact"
                else NameWeight(0.0, value)
                for level, value in bits.items()
            }
        else:
            fields[name] = bits
    return MatchModel(names, fields, None, "estimated", {"fields": estimated})


def estimate_prior(pair_bits: Iterable[float], clinic_size: int) -> float:
    """log2 prior odds of a match: expected true pairs among the compared over all pairs.

    `pair_bits` are the bits of the compared pairs that may be true; pairs never compared
    are taken to be two people."""
    bits = list(pair_bits)
    all_pairs = max(clinic_size * (clinic_size - 1) / 2, 1.0)
    share = 1.0 / max(clinic_size, 2)
    for _ in range(PRIOR_ITERATIONS):
        prior = math.log2(share / (1 - share))
        expected = sum(probability_of(b + prior) for b in bits)
        share = min(max(expected / all_pairs, 1e-12), 0.5)
    return math.log2(share / (1 - share))
