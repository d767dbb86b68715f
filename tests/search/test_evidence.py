"""Evidence ranking on in-memory names: near dates, weights, readings, matched fields."""

from __future__ import annotations

import datetime as dt

from patient_search.search.evidence import (
    DOB_DIFFERENT_BITS,
    DOB_EXACT_BITS,
    DobAgreement,
    NameFields,
    TermWeights,
    dob_agreement,
    highlights,
    near_dates,
    weigh,
)
from patient_search.search.indexing import name_index
from patient_search.search.ranking import Rung, TokenCandidates


def person(first: str, last: str, middle: str | None = None) -> NameFields:
    names = name_index(first, middle, last)
    return NameFields.of(names.first_key, names.last_key, names.terms)


def tokens(*typed: str, typo: dict[str, set[str]] | None = None) -> list[TokenCandidates]:
    found = []
    for token in typed:
        candidates = TokenCandidates.for_token(token)
        candidates.typo = set((typo or {}).get(token, set()))
        found.append(candidates)
    return found


class TestNearDates:
    def test_transposed_digits_of_the_year_and_the_day(self) -> None:
        near = near_dates(dt.date(1967, 5, 9))
        assert near[dt.date(1976, 5, 9)] is DobAgreement.TRANSPOSED
        assert near[dt.date(1967, 9, 5)] is DobAgreement.DAY_MONTH_SWAPPED

    def test_one_digit_changed(self) -> None:
        near = near_dates(dt.date(1967, 5, 9))
        assert near[dt.date(1961, 5, 9)] is DobAgreement.ONE_DIGIT
        assert near[dt.date(1967, 5, 8)] is DobAgreement.ONE_DIGIT
        assert near[dt.date(1967, 8, 9)] is DobAgreement.ONE_DIGIT

    def test_only_valid_dates_and_never_the_date_itself(self) -> None:
        typed = dt.date(1980, 2, 28)
        near = near_dates(typed)
        assert typed not in near
        assert 20 < len(near) < 60
        assert all(dt.date(1900, 1, 1) <= date <= dt.date.today() for date in near)
        # 1980-02-82 (the day's digits swapped) is no date; 1980-02-29 (leap day) is one.
        assert dt.date(1980, 2, 29) in near

    def test_agreement_takes_the_best_of_the_typed_dates(self) -> None:
        stored = dt.date(1934, 7, 31)
        assert dob_agreement([dt.date(1934, 7, 31)], stored) is DobAgreement.EXACT
        assert dob_agreement([dt.date(1943, 7, 31)], stored) is DobAgreement.TRANSPOSED
        assert dob_agreement([dt.date(2001, 1, 1)], stored) is DobAgreement.DIFFERENT
        assert dob_agreement([dt.date(2001, 1, 1)], None) is DobAgreement.UNKNOWN


class TestWeights:
    def test_a_rare_name_weighs_more_than_a_common_one(self) -> None:
        weights = TermWeights(10_000, {"smith": 120, "kowalczyk": 2})
        assert weights.bits("kowalczyk") > weights.bits("smith") > 1

    def test_an_unknown_token_weighs_as_a_name_held_by_one_patient(self) -> None:
        weights = TermWeights(1024, {})
        assert weights.bits("zzyzx") == 10

    def test_without_a_clinic_size_every_token_weighs_one_bit(self) -> None:
        assert TermWeights(0).bits("anything") == 1


class TestWeigh:
    weights = TermWeights(100_000, {"william": 900, "millar": 40, "jayed": 0})

    def test_exact_names_and_date_are_all_exact(self) -> None:
        evidence = weigh(
            person("William", "Millar"),
            [tokens("william", "millar")],
            self.weights,
            [dt.date(1934, 7, 31)],
            dt.date(1934, 7, 31),
        )
        assert evidence.all_exact
        assert evidence.missing == 0
        assert evidence.matched() == {
            "first_name": "exact",
            "last_name": "exact",
            "date_of_birth": "exact",
        }

    def test_a_replaced_first_name_with_the_right_date_beats_the_names_with_a_wrong_date(
        self,
    ) -> None:
        typed = [tokens("jayed", "millar")]
        born = [dt.date(1934, 7, 31)]
        replaced = weigh(person("William", "Millar"), typed, self.weights, born, born[0])
        other = weigh(person("Jayed", "Millar"), typed, self.weights, born, dt.date(1950, 1, 1))
        assert replaced.missing == 1 and not replaced.all_exact
        assert other.missing == 0 and other.dob is DobAgreement.DIFFERENT
        assert replaced.bits > other.bits
        assert replaced.matched() == {"last_name": "exact", "date_of_birth": "exact"}

    def test_a_wrong_date_counts_against_but_keeps_the_name_evidence(self) -> None:
        typed = [tokens("william", "millar")]
        wrong = weigh(
            person("William", "Millar"),
            typed,
            self.weights,
            [dt.date(1912, 7, 29)],
            dt.date(1967, 5, 9),
        )
        names_only = weigh(person("William", "Millar"), typed, self.weights, [], None)
        assert wrong.bits == names_only.bits + DOB_DIFFERENT_BITS
        assert wrong.matched()["date_of_birth"] == "different"

    def test_a_near_date_is_weaker_than_the_right_one(self) -> None:
        typed = [tokens("william", "millar")]
        near = weigh(
            person("William", "Millar"),
            typed,
            self.weights,
            [dt.date(1943, 7, 31)],
            dt.date(1934, 7, 31),
        )
        exact = weigh(
            person("William", "Millar"),
            typed,
            self.weights,
            [dt.date(1934, 7, 31)],
            dt.date(1934, 7, 31),
        )
        assert DOB_DIFFERENT_BITS < near.bits - exact.bits + DOB_EXACT_BITS < DOB_EXACT_BITS
        assert near.matched()["date_of_birth"] == "transposed"

    def test_the_best_reading_of_the_tokens_wins(self) -> None:
        joined = TokenCandidates.for_token("jayden")
        split = tokens("jayde", "n", "white")
        readings = [split, [joined, split[2]]]
        evidence = weigh(person("Jayden", "White"), readings, TermWeights(1000), [], None)
        assert evidence.missing == 0
        assert not evidence.all_exact  # typed as two words: never "exact on every field"
        assert evidence.matched() == {"first_name": "exact", "last_name": "exact"}

    def test_a_joined_reading_only_stands_in_for_words_that_agree_with_nothing(self) -> None:
        split = tokens("jo", "an")
        split[0].prefix, split[1].prefix = {"joan", "john"}, {"anderson"}
        readings = [split, [TokenCandidates.for_token("joan")]]
        evidence = weigh(person("John", "Anderson"), readings, TermWeights(1000), [], None)
        assert [a.level for a in evidence.agreements] == [Rung.PREFIX, Rung.PREFIX]

    def test_a_typo_is_named_as_one(self) -> None:
        typed = [tokens("wiliam", "millar", typo={"wiliam": {"william"}})]
        evidence = weigh(person("William", "Millar"), typed[0:1], self.weights, [], None)
        assert evidence.agreements[0].level is Rung.TYPO
        assert evidence.matched() == {"first_name": "typo", "last_name": "exact"}


class TestHighlights:
    def test_spans_of_the_matched_words_in_the_displayed_text(self) -> None:
        typed = [tokens("garcia", "mar")]
        name = person("María", "García-López")
        evidence = weigh(name, typed, TermWeights(10), [], None)
        spans = highlights(
            evidence.agreements,
            {"first_name": "María", "middle_name": None, "last_name": "García-López"},
        )
        assert spans == {"first_name": [(0, 3)], "last_name": [(0, 6)]}
