"""`patient-search duplicates`: the suspected duplicate pairs already in a clinic.

1. **Weights from the clinic itself** (`estimate.py`): random pairs of a sample of its
   patients give u; the blocking passes below give m by EM; the compared pairs give the prior.
2. **Blocking passes** (`scan_repository.py`): the clinic is streamed once per blocking key
   (date of birth, last name, postal code, street, any whole name), sorted by that key;
   patients sharing a key value form a block, and the
   pairs inside a block are compared (`compare.py`). A pair met in several passes is compared
   once. Blocks larger than MAX_BLOCK (a common surname) are skipped and counted: their pairs
   still meet in the other passes. Inside a block, two patients are compared only when they
   share a signal outside the block's key: a name token, its sound, a one-letter deletion or
   a nickname, part of the date of birth, a phone, the email or part of the address.
   Strangers who share only the key are most of a large clinic's pairs (13M same-day pairs at
   1M patients), and compared they would all be graded below `possible`.
3. **Grades**: every compared pair is weighed with the estimated model and graded; the
   suspected ones are written best first.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import random
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from psycopg import AsyncConnection

from patient_search.db.statements import NullObserver, StatementRunner
from patient_search.matching.compare import Comparison, MatchRecord, compare
from patient_search.matching.estimate import (
    FIELDS,
    BlockingPass,
    Pattern,
    estimate,
    estimate_prior,
    pattern_of,
)
from patient_search.matching.model import (
    DEFAULT_MODEL,
    GRADES,
    NAME_FIELDS,
    POSSIBLE_AT,
    Grade,
    MatchModel,
)
from patient_search.matching.repository import MatchRepository
from patient_search.matching.scan_repository import (
    BLOCKING_QUERIES,
    MAX_BLOCK,
    ScanRepository,
)
from patient_search.matching.service import stored_record
from patient_search.search.evidence import TermWeights
from patient_search.search.names import deletion_keys, nickname_variants, phonetic_codes

# EM reads a uniform sample of each pass's pairs, screened or not: the screened pairs alone
# would be chosen for agreeing, and bias m.
EM_PAIRS_PER_PASS = 200_000
RANDOM_PATIENTS = 5000
# Below this, random pairs repeat and the prior is a guess: the default weights are used.
MIN_ESTIMATION_PATIENTS = 1000
RANDOM_PAIRS = 500_000
# m and the prior from u, then u corrected for the true pairs among the random ones, ...
ESTIMATION_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class SuspectedPair:
    """Two patients who may be one person."""

    a: uuid.UUID
    b: uuid.UUID
    mrn_a: str
    mrn_b: str
    grade: Grade
    score: float


@dataclass(slots=True)
class ScanReport:
    pairs: list[SuspectedPair]
    compared: int
    skipped_blocks: int
    model: MatchModel


@dataclass(frozen=True, slots=True)
class _Compared:
    """A compared pair, kept small: a large clinic has millions of them until graded."""

    mrn_a: str
    mrn_b: str
    pattern: Pattern
    terms: tuple[str | None, str | None]  # the typed first and last name that agreed

    def comparison(self) -> Comparison:
        levels = {name: level for name, level in zip(FIELDS, self.pattern, strict=True) if level}
        terms = {name: t for name, t in zip(NAME_FIELDS, self.terms, strict=True) if t}
        return Comparison(levels, terms)


@lru_cache(maxsize=262_144)
def _token_signals(token: str) -> frozenset[str]:
    """What two spellings of one name share: the name, its sounds, its one-letter
    deletions and its nicknames (a typo is one deletion from both spellings)."""
    return frozenset(
        {token}
        | phonetic_codes(token)
        | (deletion_keys(token, 1) if len(token) > 3 else set())
        | nickname_variants(token)
    )


def _date_signals(born: dt.date) -> set[str]:
    """Year with month, year with day, month with day (either order): a date one digit,
    one transposition inside a part, or a day-month swap away keeps at least one."""
    month, day = sorted((born.month, born.day))
    return {
        f"born:{born.year}:{born.month}:",
        f"born:{born.year}::{born.day}",
        f"born:{born.year}:{month}-{day}",
        f"born::{month}-{day}",
    }


def _signals(record: MatchRecord, key_fields: frozenset[str]) -> frozenset[str]:
    """What two records of one person may share, outside the fields of the blocking key."""
    found: set[str] = set()
    names = [record.middle]
    if "first_name" not in key_fields:
        names.append(record.first)
    if "last_name" not in key_fields:
        names.append(record.last)
    for token in " ".join(names).split():
        found |= _token_signals(token)
    if record.date_of_birth is not None and "date_of_birth" not in key_fields:
        found |= _date_signals(record.date_of_birth)
    found.update(f"phone:{phone}" for phone in record.phones)
    if record.email:
        found.add(f"email:{record.email}")
    if record.postal_code and "postal_code" not in key_fields:
        found.add(f"postal:{record.postal_code}")
    found.update(f"street:{token}" for token in record.street.split() if not token.isdigit())
    if record.city:
        found.add(f"city:{record.city}")
    return frozenset(found)


async def _random_patterns(repo: ScanRepository) -> Counter[Any]:
    """Comparison patterns of random pairs of patients: the u of every level."""
    records = [stored_record(row) for row in await repo.random_sample(RANDOM_PATIENTS)]
    patterns: Counter[Any] = Counter()
    if len(records) < 2:
        return patterns
    rng = random.Random(len(records))
    for _ in range(RANDOM_PAIRS):
        a, b = rng.sample(records, 2)
        patterns[pattern_of(compare(a, b))] += 1
    return patterns


def _estimated(
    random_patterns: Counter[Any],
    passes: list[BlockingPass],
    compared: dict[tuple[uuid.UUID, uuid.UUID], _Compared],
    weights: TermWeights,
    progress: TextIO,
) -> MatchModel:
    """The clinic's own model; the default one for a clinic too small to estimate from."""
    if weights.clinic_size < MIN_ESTIMATION_PATIENTS:
        print(
            f"duplicates: fewer than {MIN_ESTIMATION_PATIENTS} patients: default weights",
            file=progress,
        )
        return DEFAULT_MODEL
    model: MatchModel | None = None
    for _ in range(ESTIMATION_ROUNDS):
        model = estimate(random_patterns, passes, model)
        bits = [model.bits(pair.comparison(), weights) for pair in compared.values()]
        prior = estimate_prior(bits, weights.clinic_size)
        model = MatchModel(model.names, model.fields, prior, model.source, model.details)
    assert model is not None
    print(
        f"duplicates: weights estimated from {sum(random_patterns.values())} random pairs"
        f" and {len(compared)} compared pairs; prior odds of a pair 1 in {2**-prior:,.0f}",
        file=progress,
    )
    return model


async def scan(
    conn: AsyncConnection[Any], min_grade: Grade, progress: TextIO = sys.stderr
) -> ScanReport:
    """Every suspected pair of the clinic (the connection's transaction is scoped to it)."""
    repo = ScanRepository(conn)
    weights = await repo.term_weights()
    random_patterns = (
        await _random_patterns(repo)
        if weights.clinic_size >= MIN_ESTIMATION_PATIENTS
        else Counter[Any]()
    )
    passes = []
    compared: dict[tuple[uuid.UUID, uuid.UUID], _Compared] = {}
    patterns: dict[Pattern, Pattern] = {}  # one tuple per distinct pattern
    skipped = 0
    rng = random.Random(weights.clinic_size)
    for label, query in BLOCKING_QUERIES.items():
        key_fields = query.key_fields
        blocking = BlockingPass(key_fields)
        passes.append(blocking)
        total = await repo.pair_count(query)
        sample_rate = min(1.0, EM_PAIRS_PER_PASS / max(float(total), 1.0))
        blocks = 0
        async for block in repo.blocks(query):
            blocks += 1
            if len(block) > MAX_BLOCK:
                skipped += 1
                continue
            records = [(row, stored_record(row)) for row in block]
            signals = [_signals(record, key_fields) for _, record in records]
            for (i, (row_a, a)), (j, (row_b, b)) in itertools.combinations(enumerate(records), 2):
                sampled = sample_rate >= 1.0 or rng.random() < sample_rate
                if not sampled and signals[i].isdisjoint(signals[j]):
                    continue
                first, second = (row_a, row_b) if row_a["id"] < row_b["id"] else (row_b, row_a)
                ids = (first["id"], second["id"])
                known = compared.get(ids)
                if known is None:
                    comparison = compare(a, b) if first is row_a else compare(b, a)
                    pattern = patterns.setdefault(pattern_of(comparison), pattern_of(comparison))
                    terms = (comparison.terms.get("first_name"), comparison.terms.get("last_name"))
                    known = _Compared(first["mrn"], second["mrn"], pattern, terms)
                    compared[ids] = known
                if sampled:
                    blocking.patterns[known.pattern] += 1
        print(
            f"duplicates: {label}: {blocks} blocks, {len(compared)} pairs compared so far",
            file=progress,
        )
    model = _estimated(random_patterns, passes, compared, weights, progress)
    accepted = set(GRADES[: GRADES.index(min_grade) + 1])
    pairs = []
    for ids, pair in compared.items():
        comparison = pair.comparison()
        probability = model.probability(comparison, weights)
        if probability < POSSIBLE_AT:
            continue
        grade = model.grade(comparison, probability)
        if grade in accepted:
            pairs.append(
                SuspectedPair(ids[0], ids[1], pair.mrn_a, pair.mrn_b, grade, round(probability, 6))
            )
    pairs.sort(key=lambda p: (-p.score, str(p.a), str(p.b)))
    return ScanReport(pairs, len(compared), skipped, model)


async def save_model(conn: AsyncConnection[Any], model: MatchModel) -> None:
    """Store the clinic's estimated model for the duplicate check (a write transaction)."""
    runner = StatementRunner(conn, NullObserver())
    await MatchRepository(runner).save_clinic_model(model.to_json())


def write_csv(path: Path, pairs: Sequence[SuspectedPair]) -> None:
    """One row per pair: patient_id_a,patient_id_b,mrn_a,mrn_b,grade,score."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id_a", "patient_id_b", "mrn_a", "mrn_b", "grade", "score"])
        for pair in pairs:
            writer.writerow([pair.a, pair.b, pair.mrn_a, pair.mrn_b, pair.grade, pair.score])
