"""Name keys: folding, tokens, index terms, nicknames, phonetics, typo budgets, deletions."""

from __future__ import annotations

import string

import pytest

from patient_search.search.names import (
    deletion_keys,
    edit_distance,
    fold,
    index_terms,
    name_tokens,
    nickname_variants,
    phonetic_codes,
    typo_budget,
    within_typo_budget,
)

# --- fold -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("José Núñez", "jose nunez"),
        ("JOSE NUNEZ", "jose nunez"),
        ("Łukasz Wałęsa", "lukasz walesa"),
        ("Søren Kierkegaard", "soren kierkegaard"),
        ("Straße", "strasse"),
        ("Æsa Œrsted", "aesa oersted"),
        ("Đorđe", "dorde"),
        ("Þór Guðmundsson", "thor gudmundsson"),
        ("Yıldız", "yildiz"),
        ("İlkay", "ilkay"),
        ("Ｊｏｈｎ", "john"),  # full-width forms
        ("ﬁona", "fiona"),  # ligature
        ("François Müller-Lüdenscheidt", "francois muller-ludenscheidt"),
    ],
)
def test_fold_examples(raw: str, folded: str) -> None:
    assert fold(raw) == folded


def test_fold_is_idempotent_over_latin_and_punctuation_blocks() -> None:
    blocks = [range(0x20, 0x250), range(0x2B0, 0x370), range(0x1E00, 0x1F00)]
    blocks += [range(0x2000, 0x2070), range(0xFB00, 0xFB07), range(0xFF01, 0xFF5F)]
    for block in blocks:
        for codepoint in block:
            once = fold(chr(codepoint))
            assert fold(once) == once, hex(codepoint)
    sample = "Ñoño O’Brien-Ørsted ǅemal Ǆ ß ẞ İ ı Ĳssel"
    assert fold(fold(sample)) == fold(sample)


def test_accented_and_plain_input_give_equal_tokens() -> None:
    assert name_tokens("José Núñez") == name_tokens("jose nunez") == ["jose", "nunez"]
    assert name_tokens("jose nunez") == name_tokens("JOSÉ NÚÑEZ")


# --- name_tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tokens"),
    [
        ("García-López", ["garcia", "lopez"]),
        ("de la Cruz", ["de", "la", "cruz"]),
        ("  Smith,  John ", ["smith", "john"]),
        ("O'Brien", ["o", "brien"]),
        ("O’Brien", ["o", "brien"]),  # typographic apostrophe
        ("Oʼbrien", ["o", "brien"]),  # modifier-letter apostrophe (a letter in Unicode)
        ("Smith/Jones", ["smith", "jones"]),
        ("J.R.R. Tolkien", ["j", "r", "r", "tolkien"]),
        ("Anne–Marie", ["anne", "marie"]),  # en dash
        ("snake_case", ["snake", "case"]),
        ("Henry 3rd", ["henry", "3rd"]),
        ("", []),
        (" ,.-' ", []),
    ],
)
def test_name_tokens(raw: str, tokens: list[str]) -> None:
    assert name_tokens(raw) == tokens


def test_comma_order_does_not_change_the_tokens() -> None:
    assert sorted(name_tokens("Smith, John")) == sorted(name_tokens("John Smith"))


# --- index_terms ----------------------------------------------------------------------


def test_index_terms_include_tokens_and_joined_compounds() -> None:
    terms = index_terms("María", None, "García-López")
    assert {"maria", "garcia", "lopez", "garcialopez"} <= terms


@pytest.mark.parametrize(
    ("last", "joined"),
    [
        ("O'Brien", "obrien"),
        ("de la Cruz", "delacruz"),
        ("van der Berg", "vanderberg"),
        ("Mc Donald", "mcdonald"),
    ],
)
def test_compound_is_findable_typed_without_separators(last: str, joined: str) -> None:
    terms = index_terms("Pat", None, last)
    assert joined in terms
    assert set(name_tokens(last)) <= terms
    # Whatever the user types, spaced or joined, every query token is an exact term.
    assert set(name_tokens(joined)) <= terms


def test_index_terms_drop_particles_in_partial_joins() -> None:
    assert "lacruz" in index_terms(None, None, "de la Cruz")


def test_index_terms_handle_missing_names_and_include_middle() -> None:
    assert index_terms(None, None, None) == set()
    assert index_terms("", "  ", "") == set()
    assert index_terms("John", "Q", "Public") == {"john", "q", "public"}


def test_index_terms_do_not_join_across_fields() -> None:
    assert "johnsmith" not in index_terms("John", None, "Smith")


def test_index_terms_bound_long_garbage() -> None:
    terms = index_terms(None, None, " ".join(string.ascii_lowercase))
    # 26 tokens, joins of spans 2..4 (25 + 24 + 23) and the whole: linear, not quadratic.
    assert len(terms) == 26 + 25 + 24 + 23 + 1


# --- nickname_variants ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nickname", "canonical"),
    [("bill", "william"), ("bob", "robert"), ("peggy", "margaret"), ("liz", "elizabeth")],
)
def test_nicknames_both_directions(nickname: str, canonical: str) -> None:
    assert canonical in nickname_variants(nickname)
    assert nickname in nickname_variants(canonical)


def test_nickname_variants_fold_input_and_exclude_the_token() -> None:
    assert nickname_variants("BILL") == nickname_variants("bill")
    assert "bill" in nickname_variants(" WILLIAM ")
    assert "bill" not in nickname_variants("bill")
    variants = nickname_variants("william") | nickname_variants("elizabeth")
    assert all(fold(v) == v and name_tokens(v) == [v] for v in variants)


def test_nickname_variants_unknown_and_identifier() -> None:
    assert nickname_variants("zzyzx") == set()
    assert nickname_variants("") == set()
    assert nickname_variants("b1ll") == set()


def test_nickname_variants_returns_a_fresh_set() -> None:
    nickname_variants("bill").clear()
    assert "william" in nickname_variants("bill")


# --- phonetic_codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("kathryn", "catherine"),
        ("smyth", "smith"),
        ("jon", "john"),
        ("steven", "stephen"),
        ("geoff", "jeff"),
        ("schmidt", "schmitt"),
        ("nunez", "nunes"),
        ("Núñez", "nunes"),
    ],
)
def test_phonetic_pairs_share_a_code(a: str, b: str) -> None:
    assert phonetic_codes(a) & phonetic_codes(b)


def test_phonetic_codes_distinguish_different_names() -> None:
    assert not phonetic_codes("smith") & phonetic_codes("jones")


def test_phonetic_codes_shape() -> None:
    codes = phonetic_codes("Catherine")
    assert codes == phonetic_codes("catherine")  # deterministic, folded input
    assert 1 <= len(codes) <= 2
    # Upper-case on purpose: no code can collide with a (lower-case) folded token.
    assert all(code and code == code.upper() and fold(code) != code for code in codes)


@pytest.mark.parametrize("token", ["", "12345", "mrn42", "иван"])
def test_phonetic_codes_empty_for_identifiers_and_unencodable(token: str) -> None:
    assert phonetic_codes(token) == set()


# --- typo_budget ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "budget"),
    [("", 0), ("bob", 0), ("john", 1), ("michael", 1), ("jonathan", 2), ("christopher", 2)],
)
def test_typo_budget_by_length(token: str, budget: int) -> None:
    assert len(token) in {0, 3, 4, 7, 8, 11}
    assert typo_budget(token) == budget


def test_typo_budget_counts_folded_length_and_is_zero_for_identifiers() -> None:
    assert typo_budget("Straß") == 1  # folds to "strass", 6 chars
    assert typo_budget("12345678") == 0


# --- deletion_keys --------------------------------------------------------------------


def test_deletion_keys_counts() -> None:
    assert deletion_keys("smith", 0) == {"smith"}
    assert len(deletion_keys("smith", 1)) == 1 + 5
    assert deletion_keys("anna", 1) == {"anna", "nna", "ana", "ann"}  # duplicates collapse
    assert len(deletion_keys("abcdefghijkl", 2)) == 1 + 12 + 66 == 79
    assert deletion_keys("ab", 5) == {"ab", "a", "b"}  # never the empty key
    assert len(deletion_keys("abcd", 3)) == 1 + 4 + 6 + 4  # deeper than any budget


def test_deletion_keys_fold_input_and_refuse_identifiers() -> None:
    assert "jose" in deletion_keys("José", 1)
    assert deletion_keys("a1234", 1) == set()
    assert deletion_keys("", 2) == set()
    with pytest.raises(ValueError, match="max_deletes"):
        deletion_keys("smith", -1)


def _one_edit_typos(word: str) -> set[str]:
    letters = string.ascii_lowercase
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    inserts = {a + c + b for a, b in splits for c in letters}
    substitutes = {a + c + b[1:] for a, b in splits if b for c in letters}
    transposes = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    return (deletes | inserts | substitutes | transposes) - {word}


@pytest.mark.parametrize("name", ["maria", "smith", "jones"])
def test_every_one_edit_typo_shares_a_deletion_key(name: str) -> None:
    indexed = deletion_keys(name, typo_budget(name))
    typos = _one_edit_typos(name)
    assert len(typos) > 250
    for typo in typos:
        assert deletion_keys(typo, typo_budget(typo)) & indexed, typo
        assert within_typo_budget(typo, name), typo


# --- edit_distance / within_typo_budget -----------------------------------------------


def test_edit_distance() -> None:
    assert edit_distance("jonh", "john") == 1  # transposition is one edit
    assert edit_distance("john", "john") == 0
    assert edit_distance("José", "jose") == 0
    assert edit_distance("smith", "smyth") == 1
    assert edit_distance("ca", "abc") == 3  # OSA, not unrestricted Damerau (2)


def test_within_typo_budget() -> None:
    assert not within_typo_budget("mertim", "martin")  # 2 edits, 6 letters: budget 1
    assert within_typo_budget("katherene", "catherine")  # 2 edits, 9 letters: budget 2
    assert within_typo_budget("jonh", "john")
    assert not within_typo_budget("katerinaa", "catherine")  # 3 edits


def test_within_typo_budget_zero_is_exact_only() -> None:
    assert within_typo_budget("bob", "bob")
    assert within_typo_budget("BÓB", "bob")
    assert not within_typo_budget("bob", "rob")
    assert not within_typo_budget("1234567", "1234568")
