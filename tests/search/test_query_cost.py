"""What one query may cost, whatever is typed: bounded typo keys and prefix terms."""

from __future__ import annotations

import random
import string

from patient_search.search import service
from patient_search.search.parse import parse_query
from patient_search.search.ranking import TokenCandidates


def _probes(q: str) -> dict[str, list[TokenCandidates]]:
    tokens = [TokenCandidates.for_token(t) for t in parse_query(q, "US").names]
    return service._vocabulary_probes(tokens)


def test_a_200_letter_token_costs_no_typo_keys() -> None:
    # Two deletions of it would be 20,000 keys in one statement; no typo-keyed term is
    # longer than MAX_TYPO_KEYED_LENGTH, so none of them could ever match.
    token = "".join(random.Random(1).choices(string.ascii_lowercase, k=200))
    assert len(_probes(token)) <= 2  # its sound codes only


def test_every_query_stays_inside_the_key_budget() -> None:
    rng = random.Random(2)
    for length in (8, 12, 14, 24):
        q = " ".join("".join(rng.choices(string.ascii_lowercase, k=length)) for _ in range(8))
        assert len(_probes(q[:200])) <= service.MAX_QUERY_KEYS


def test_names_keep_their_typo_keys() -> None:
    # A 14-letter token may be a 12-letter name with two letters added: it keeps its keys.
    assert len(_probes("wolfeschlegelx")) > 100
    assert "wolfeschlegel" in _probes("wolfeschlegelx")
