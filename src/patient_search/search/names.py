"""Name normalisation and fuzzy-match keys, shared by indexing and querying.

Row-level security rules out GIN/trigram indexes, so every kind of fuzziness is turned
into exact keys here: folded tokens, nickname variants, phonetic codes and SymSpell
deletion keys. Index time and query time must both call these functions so the keys agree.

Input convention: every function accepts raw text and folds it itself (``fold`` has an
ASCII fast path, so re-folding folded input is cheap); every returned token is folded.
Tokens containing a digit are identifiers, not names: they get no nickname variants, no
phonetic codes, no deletion keys and a typo budget of 0.

Phonetics: Double Metaphone via the ``doublemetaphone`` package (a C++ extension shipped as
manylinux wheels, sdist builds with g++). It measured ~2 µs/token against ~15 µs for the
pure-Python ``metaphone`` package, with identical codes on the required pairs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import cast

from doublemetaphone import (  # type: ignore[import-untyped, unused-ignore]
    doublemetaphone as _doublemetaphone,
)
from nicknames import NickNamer
from rapidfuzz.distance import OSA

__all__ = [
    "deletion_keys",
    "edit_distance",
    "fold",
    "index_terms",
    "name_tokens",
    "nickname_variants",
    "phonetic_codes",
    "typo_budget",
    "within_typo_budget",
]

# The extension is untyped; pin its signature once here.
_metaphone = cast(Callable[[str], tuple[str, str]], _doublemetaphone)

# Letters that NFKD leaves whole (they are letters of their own, not base + mark), keyed
# by their casefolded form since the table is applied after casefolding.
_SPECIAL_LETTERS = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
        "ĸ": "k",
        "ŋ": "n",
        "ƀ": "b",
        "ɨ": "i",
        "ʉ": "u",
        "ƒ": "f",
        "ɖ": "d",
        "ɗ": "d",
        "ɓ": "b",
        "ƙ": "k",
        "ƴ": "y",
        "ə": "e",
        "ɛ": "e",
        "ɔ": "o",
        # Modifier-letter apostrophes (Hawaiian okina, Unicode-smart O'Brien) are category
        # Lm, so the tokenizer would treat them as letters; make them ordinary apostrophes.
        "ʼ": "'",
        "ʻ": "'",
        "ʽ": "'",
        "ʹ": "'",
        "ˈ": "'",
    }
)

# A token is a run of letters/digits; underscores and all punctuation separate tokens.
_TOKEN = re.compile(r"[^\W_]+")
_DIGIT = re.compile(r"\d")

# Joined forms of multi-token names are generated for contiguous runs of up to this many
# tokens (plus the whole name), so "de la Cruz" also yields "lacruz" without a pasted
# 20-word string producing hundreds of terms.
_MAX_JOIN_SPAN = 4

# Parsing the bundled nickname CSV takes milliseconds; do it once per process.
_NICKNAMER = NickNamer()


def fold(text: str) -> str:
    """Lower-case ``text`` and strip accents and special letters: "José Núñez" -> "jose nunez"."""
    if text.isascii():
        # ASCII has no marks or special letters, and casefold equals lower on it.
        return text.lower()
    # NFKD splits base letters from marks and expands ligatures/full-width forms; casefold
    # can produce new decomposable characters, hence the second NFKD.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.category(ch).startswith("M"))
    return stripped.translate(_SPECIAL_LETTERS)


def name_tokens(text: str) -> list[str]:
    """Folded tokens of ``text``, split on whitespace and every punctuation mark."""
    return _TOKEN.findall(fold(text))


def index_terms(first: str | None, middle: str | None, last: str | None) -> set[str]:
    """Every exact term a patient is findable by: all name tokens plus compound joins."""
    terms: set[str] = set()
    for name in (first, middle, last):
        if not name:
            continue
        tokens = name_tokens(name)
        terms.update(tokens)
        count = len(tokens)
        if count < 2:
            continue
        # A user may type a compound without its hyphen/space/apostrophe ("obrien",
        # "garcialopez", "delacruz") or drop a particle ("lacruz").
        terms.add("".join(tokens))
        for start in range(count - 1):
            for end in range(start + 2, min(start + _MAX_JOIN_SPAN, count) + 1):
                terms.add("".join(tokens[start:end]))
    return terms


def _single_token(text: str) -> str:
    # Nickname data has entries such as "l.b."; join them the way index_terms does.
    return "".join(name_tokens(text))


@lru_cache(maxsize=65_536)
def _nickname_variants(token: str) -> frozenset[str]:
    if not token or _DIGIT.search(token):
        return frozenset()
    raw = _NICKNAMER.nicknames_of(token) | _NICKNAMER.canonicals_of(token)
    variants = {joined for name in raw if (joined := _single_token(name))}
    variants.discard(token)
    return frozenset(variants)


def nickname_variants(token: str) -> set[str]:
    """Nicknames and canonical names of ``token`` (one hop each way), excluding itself."""
    return set(_nickname_variants(fold(token).strip()))


@lru_cache(maxsize=262_144)
def _phonetic_codes(token: str) -> frozenset[str]:
    if not token or _DIGIT.search(token):
        return frozenset()
    primary, alternate = _metaphone(token)
    return frozenset(code for code in (primary, alternate) if code)


def phonetic_codes(token: str) -> set[str]:
    """Double Metaphone primary and alternate codes of ``token`` (upper-case ASCII)."""
    # Codes stay upper-case on purpose: folded tokens are never upper-case, so codes and
    # tokens can share one key column without colliding.
    return set(_phonetic_codes(fold(token)))


def typo_budget(token: str) -> int:
    """Damerau (OSA) edits tolerated for ``token``: 0 up to 3 chars, 1 up to 7, else 2."""
    folded = fold(token)
    if _DIGIT.search(folded):
        # Identifiers are matched exactly: a one-digit typo is a different patient.
        return 0
    length = len(folded)
    if length <= 3:
        return 0
    if length <= 7:
        return 1
    return 2


def deletion_keys(token: str, max_deletes: int) -> set[str]:
    """SymSpell keys: ``token`` with 0..``max_deletes`` characters deleted (never empty)."""
    if max_deletes < 0:
        raise ValueError(f"max_deletes must be >= 0, got {max_deletes}")
    folded = fold(token)
    if not folded or _DIGIT.search(folded):
        return set()
    # The empty key would match every term, so never delete the last character.
    length = len(folded)
    depth = min(max_deletes, length - 1)
    keys = {folded}
    if depth >= 1:
        keys.update(folded[:i] + folded[i + 1 :] for i in range(length))
    if depth >= 2:
        # Budgets never exceed 2, so pairs of positions are enumerated directly (i < j):
        # half the string building of deleting twice from every one-deletion key.
        frontier = {
            folded[:i] + folded[i + 1 : j] + folded[j + 1 :]
            for i in range(length)
            for j in range(i + 1, length)
        }
        keys |= frontier
        # Deeper levels go breadth-first; sets dedupe repeated letters at each level, so
        # the work is bounded by distinct keys rather than length**depth paths.
        for _ in range(depth - 2):
            frontier = {word[:i] + word[i + 1 :] for word in frontier for i in range(len(word))}
            keys |= frontier
    return keys


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment Damerau-Levenshtein distance between folded ``a`` and ``b``."""
    return int(OSA.distance(fold(a), fold(b)))


def within_typo_budget(query_token: str, term: str) -> bool:
    """Whether ``term`` is within ``query_token``'s typo budget (budget 0: exact only)."""
    budget = typo_budget(query_token)
    query, candidate = fold(query_token), fold(term)
    if budget == 0:
        return query == candidate
    # score_cutoff lets rapidfuzz stop early; anything beyond it reports budget + 1.
    return int(OSA.distance(query, candidate, score_cutoff=budget)) <= budget
