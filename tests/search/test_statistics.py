"""The per-worker counts behind the term weights: counted once, then remembered a while."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

from patient_search.search.statistics import ClinicStatistics, estimated_size, size_sample


class TestClinicStatistics:
    async def test_the_size_is_counted_once_per_clinic_within_its_lifetime(self) -> None:
        statistics = ClinicStatistics()
        counts: list[str] = []

        async def count(clinic: str, size: int) -> int:
            counts.append(clinic)
            return size

        assert await statistics.clinic_size("a", lambda: count("a", 10)) == 10
        assert await statistics.clinic_size("a", lambda: count("a", 99)) == 10
        assert await statistics.clinic_size("b", lambda: count("b", 7)) == 7
        assert counts == ["a", "b"]

    async def test_an_expired_size_is_counted_again(self) -> None:
        statistics = ClinicStatistics(size_ttl_s=0)
        sizes = iter([5, 6])

        async def count() -> int:
            return next(sizes)

        assert await statistics.clinic_size("a", count) == 5
        assert await statistics.clinic_size("a", count) == 6

    def test_frequencies_are_per_clinic_and_only_the_unknown_are_asked_for(self) -> None:
        statistics = ClinicStatistics()
        assert statistics.known_frequencies("a", ["smith", "jones"]) == ({}, ["smith", "jones"])
        statistics.remember_frequencies("a", {"smith": 120})
        assert statistics.known_frequencies("a", ["smith", "jones"]) == ({"smith": 120}, ["jones"])
        assert statistics.known_frequencies("b", ["smith"]) == ({}, ["smith"])

    def test_expired_frequencies_are_asked_for_again(self) -> None:
        statistics = ClinicStatistics(term_ttl_s=0)
        statistics.remember_frequencies("a", {"smith": 120})
        assert statistics.known_frequencies("a", ["smith"]) == ({}, ["smith"])


class TestSizeEstimate:
    def test_the_sample_spans_every_birth_year(self) -> None:
        today = dt.date(2026, 12, 4)
        sample = size_sample(today)
        assert sample[0] == dt.date(1900, 1, 1)
        assert today - dt.timedelta(days=97) < sample[-1] <= today
        assert len({date.year for date in sample}) == 127

    def test_a_uniform_clinic_is_estimated_within_a_few_percent(self) -> None:
        today = dt.date(2026, 12, 4)
        rng = random.Random(3)
        days = (today - dt.date(1900, 1, 1)).days
        born = Counter(
            dt.date(1900, 1, 1) + dt.timedelta(rng.randrange(days)) for _ in range(200_000)
        )
        sample = size_sample(today)
        estimate = estimated_size(sum(born[date] for date in sample), sample, today)
        assert abs(estimate - 200_000) / 200_000 < 0.05

    def test_an_empty_sample_still_weighs(self) -> None:
        assert estimated_size(0, size_sample(dt.date(2026, 1, 1)), dt.date(2026, 1, 1)) == 1
