"""What a patient is findable by: the keys written to the search structures on every write."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from patient_search.search.names import (
    deletion_keys,
    index_terms,
    name_tokens,
    phonetic_codes,
    typo_budget,
)

# Postings sort a missing date of birth after every real one.
NO_BIRTH_DATE = dt.date.max


@dataclass(frozen=True, slots=True)
class NameIndex:
    """The folded sort keys and the exact terms of one patient's name."""

    first_key: str
    last_key: str
    terms: list[str]
    joined: list[str]  # the terms that are compounds joined into one word


def name_index(first: str | None, middle: str | None, last: str) -> NameIndex:
    """Sort keys and sorted exact terms for a patient's names."""
    terms = index_terms(first, middle, last)
    words = {token for name in (first, middle, last) for token in name_tokens(name or "")}
    return NameIndex(
        first_key=" ".join(name_tokens(first or "")),
        last_key=" ".join(name_tokens(last)),
        terms=sorted(terms),
        joined=sorted(terms - words),
    )


# Typo keys grow with length (a 12-letter term has ~80). Longer terms are joined compound
# names ("sanchobenavides"), which people type as parts: those parts carry their own keys.
MAX_TYPO_KEYED_LENGTH = 12


def vocabulary_keys(term: str) -> set[str]:
    """Equality keys that lead to `term` from a misspelling: phonetic codes and SymSpell deletes."""
    keys = phonetic_codes(term)
    if len(term) <= MAX_TYPO_KEYED_LENGTH:
        keys |= deletion_keys(term, typo_budget(term))
    return keys
