"""What ranking needs to know about a clinic's data: its size and how common each name is.

Both are counted in the clinic's own transaction (through row-level security) and kept per
worker for a while: they change slowly, a count of a common name reads thousands of index
entries (measured at 1M patients: ~2.9 ms for `john` up to the 5,000 cap), and the names
typed most often are the commonest ones. Counting a clinic's patients would scan the clinic
(~150 ms at 1M, index-only), so its size is estimated from the patients born on every 97th
day since 1900 (~1 in 97 patients, index equalities: ~1 % error at 1M, ~25 % at 2,000,
both far inside what a logarithmic weight notices) and kept for an hour. Losing the counts
(a restart) costs one recount.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable

from patient_search.patients.schemas import EARLIEST_BIRTH
from patient_search.search.evidence import FREQUENCY_CAP, TermWeights
from patient_search.search.repository import SearchRepository

TERM_TTL_S = 600.0
SIZE_TTL_S = 3600.0
# Bounded by clearing: a worker meets far fewer distinct (clinic, term) pairs in ten minutes.
MAX_TERMS = 200_000
SAMPLE_EVERY_DAYS = 97  # prime: the sample does not follow weekdays or seasons


def size_sample(today: dt.date) -> list[dt.date]:
    """The dates whose patients stand for the whole clinic in its size estimate."""
    days = (today - EARLIEST_BIRTH).days
    return [
        EARLIEST_BIRTH + dt.timedelta(days=offset) for offset in range(0, days, SAMPLE_EVERY_DAYS)
    ]


def estimated_size(born_on_sample: int, sample: list[dt.date], today: dt.date) -> int:
    """The clinic's size from the patients born on `sample` (at least 1)."""
    days = (today - EARLIEST_BIRTH).days + 1
    return max(1, round(born_on_sample * days / max(1, len(sample))))


class ClinicStatistics:
    """Per-worker, time-limited counts of patients per clinic and per (clinic, term)."""

    def __init__(self, term_ttl_s: float = TERM_TTL_S, size_ttl_s: float = SIZE_TTL_S) -> None:
        self._term_ttl_s = term_ttl_s
        self._size_ttl_s = size_ttl_s
        self._sizes: dict[str, tuple[float, int]] = {}
        self._terms: dict[tuple[str, str], tuple[float, int]] = {}

    async def clinic_size(self, clinic: str, count: Callable[[], Awaitable[int]]) -> int:
        """The clinic's size, found with `count` when not known recently."""
        now = time.monotonic()
        known = self._sizes.get(clinic)
        if known is not None and now - known[0] < self._size_ttl_s:
            return known[1]
        size = await count()
        self._sizes[clinic] = (now, size)
        return size

    def known_frequencies(
        self, clinic: str, terms: Iterable[str]
    ) -> tuple[dict[str, int], list[str]]:
        """The recently counted frequencies among `terms`, and the terms still to count."""
        now = time.monotonic()
        known: dict[str, int] = {}
        missing: list[str] = []
        for term in terms:
            entry = self._terms.get((clinic, term))
            if entry is not None and now - entry[0] < self._term_ttl_s:
                known[term] = entry[1]
            else:
                missing.append(term)
        return known, missing

    def remember_frequencies(self, clinic: str, counted: dict[str, int]) -> None:
        """Keep freshly counted frequencies."""
        if len(self._terms) + len(counted) > MAX_TERMS:
            self._terms.clear()
        now = time.monotonic()
        for term, patients in counted.items():
            self._terms[(clinic, term)] = (now, patients)


# One per worker process: the counts are derived, per process, and harmless to lose.
CLINIC_STATISTICS = ClinicStatistics()


async def estimate_clinic_size(repository: SearchRepository) -> int:
    """The clinic's size from its patients born on the sample dates."""
    today = dt.date.today()
    sample = size_sample(today)
    return estimated_size(await repository.born_on(sample), sample, today)


async def term_weights(
    clinic_id: str, repository: SearchRepository, terms: Iterable[str]
) -> TermWeights:
    """Weights of `terms` in the clinic, counting only what this worker does not know."""
    known, missing = CLINIC_STATISTICS.known_frequencies(clinic_id, terms)
    if missing:
        counted = await repository.term_frequencies(missing, FREQUENCY_CAP)
        CLINIC_STATISTICS.remember_frequencies(clinic_id, counted)
        known |= counted
    size = await CLINIC_STATISTICS.clinic_size(clinic_id, lambda: estimate_clinic_size(repository))
    return TermWeights(size, known)
