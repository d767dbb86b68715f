"""SQL of the search. Every statement is an equality or range on a B-tree key (leakproof, so
usable under row-level security), or goes through the clinic-pinned definer function."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from patient_search.db.statements import Row, Statement, StatementRunner

# A position inside one term's postings: (part, last, first, date of birth, patient id).
Bound = tuple[bool, str, str, dt.date, uuid.UUID]

# Above every character a folded term can hold, in the "C" collation's byte order.
TOP = "\U0010ffff"
# Sorts before any real posting of a term: "from the start" in keyset bounds.
START_BOUND: Bound = (False, "", "", dt.date(1, 1, 1), uuid.UUID(int=0))
# Sorts after every posting of a term: a prefix range starts past the exact term itself.
END_BOUND: Bound = (True, TOP, TOP, dt.date.max, uuid.UUID(int=(1 << 128) - 1))

_SUMMARY_COLUMNS = """
    p.id, p.mrn, p.first_name, p.middle_name, p.last_name, p.date_of_birth, p.sex, p.status,
    p.email, p.name_terms, p.first_key, p.last_key,
    ARRAY(SELECT COALESCE(ph.e164, ph.raw) FROM patient_phones ph
          WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id ORDER BY ph.position) AS phones
"""

SUMMARIES = Statement(
    "search.summaries",
    "SELECT" + _SUMMARY_COLUMNS + "FROM patients p"
    " WHERE p.id = ANY(%(ids)s::uuid[]) AND p.deleted_at IS NULL"
    " AND p.status = ANY(%(statuses)s::text[])",
)
# What ranking reads of a candidate (as search_name_candidates returns it), through RLS.
NAME_KEYS = Statement(
    "search.name_keys",
    "SELECT id, name_terms, first_key, last_key, date_of_birth FROM patients"
    " WHERE id = ANY(%(ids)s::uuid[]) AND deleted_at IS NULL"
    " AND status = ANY(%(statuses)s::text[])",
)
IDENTIFIERS = Statement(
    "search.identifiers",
    """
    SELECT 'mrn' AS kind, id FROM patients
        WHERE mrn = ANY(%(mrns)s::text[]) AND deleted_at IS NULL
    UNION ALL
    SELECT 'email', id FROM patients
        WHERE email_normalized = ANY(%(emails)s::text[]) AND deleted_at IS NULL
    UNION ALL
    SELECT 'phone', patient_id FROM patient_phones WHERE e164 = ANY(%(phones)s::text[])
    UNION ALL
    SELECT 'dob', id FROM patients
        WHERE date_of_birth = ANY(%(dates)s::date[]) AND deleted_at IS NULL
    UNION ALL
    SELECT 'postal_code', id FROM patients
        WHERE postal_code_key = ANY(%(postal_codes)s::text[]) AND deleted_at IS NULL
    LIMIT 5001
    """,
)
PHONE_SUFFIX = Statement(
    "search.phone_suffix",
    """
    SELECT patient_id AS id FROM patient_phones
    WHERE e164_reversed >= %(lo)s AND e164_reversed < %(hi)s
    LIMIT 5001
    """,
)
# How many patients hold each typed term (capped): the weight of its agreement.
TERM_FREQUENCIES = Statement(
    "search.term_frequencies",
    """
    SELECT t.term, (SELECT count(*) FROM (
        SELECT 1 FROM patient_name_terms p WHERE p.term = t.term LIMIT %(cap)s
    ) capped) AS patients
    FROM unnest(%(terms)s::text[]) AS t(term)
    """,
)
# Patients born on a sample of dates (an index-only count): the clinic's size, estimated.
BORN_ON_SAMPLE = Statement(
    "search.born_on_sample",
    "SELECT count(*) AS patients FROM patients WHERE date_of_birth = ANY(%(dates)s::date[])",
)
# Patients born on a typed date or a near one who share a candidate name term, and (fewer)
# patients born on a typed date whatever their name. The date equality drives the index;
# the term overlap filters the few rows it reads.
DOB_CANDIDATES = Statement(
    "search.dob_candidates",
    """
    (SELECT id, name_terms, first_key, last_key, date_of_birth FROM patients
     WHERE date_of_birth = ANY(%(dates)s::date[]) AND deleted_at IS NULL
       AND status = ANY(%(statuses)s::text[]) AND name_terms && %(terms)s::text[]
     LIMIT %(cap)s)
    UNION
    (SELECT id, name_terms, first_key, last_key, date_of_birth FROM patients
     WHERE date_of_birth = ANY(%(exact)s::date[]) AND deleted_at IS NULL
       AND status = ANY(%(statuses)s::text[])
     LIMIT %(exact_cap)s)
    """,
)
# Phonetic codes and typo keys of the query tokens → vocabulary terms; prefixes → terms.
VOCABULARY = Statement(
    "search.vocabulary",
    """
    SELECT 'key' AS kind, key AS probe, term FROM search_vocabulary_keys
        WHERE key = ANY(%(keys)s::text[])
    UNION ALL
    SELECT 'prefix', t.prefix, v.term
    FROM unnest(%(prefixes)s::text[], %(uppers)s::text[]) AS t(prefix, upper)
    CROSS JOIN LATERAL (
        -- Both bounds are plain values: an expression such as prefix || x is not leakproof
        -- and would turn the upper bound into a filter under row-level security.
        SELECT term FROM search_vocabulary
        WHERE term >= t.prefix AND term < t.upper AND NOT joined
        ORDER BY term LIMIT %(per_prefix)s
    ) v
    """,
)
# Ranking needs only the name keys: the definer function returns those, and what is shown
# is read afterwards, for one page, through row-level security again (SUMMARIES).
NAME_CANDIDATES = Statement(
    "search.name_candidates",
    "SELECT id, name_terms, first_key, last_key, date_of_birth FROM search_name_candidates("
    "%(terms)s::text[], %(ends)s::int[], %(statuses)s::text[], %(cap)s)",
)
SIMILAR_TERMS = Statement(
    "search.similar_terms",
    """
    SELECT t.token, s.term FROM unnest(%(tokens)s::text[]) AS t(token)
    CROSS JOIN LATERAL search_similar_terms(t.token, %(per_token)s) AS s
    """,
)
# One ordered, index-only range per candidate term, resumed after its keyset bound.
TERM_PAGES = Statement(
    "search.term_pages",
    """
    SELECT c.bucket, x.term, x.part, x.last_key, x.first_key, x.date_of_birth, x.patient_id
    FROM unnest(%(terms)s::text[], %(buckets)s::int[], %(b_part)s::bool[], %(b_last)s::text[],
                %(b_first)s::text[], %(b_dob)s::date[], %(b_id)s::uuid[])
         AS c(term, bucket, b_part, b_last, b_first, b_dob, b_id)
    CROSS JOIN LATERAL (
        SELECT t.term, t.part, t.last_key, t.first_key, t.date_of_birth, t.patient_id
        FROM patient_name_terms t
        WHERE t.term = c.term
          AND (t.part, t.last_key, t.first_key, t.date_of_birth, t.patient_id)
              > (c.b_part, c.b_last, c.b_first, c.b_dob, c.b_id)
        ORDER BY t.part, t.last_key, t.first_key, t.date_of_birth, t.patient_id
        LIMIT %(per_term)s
    ) x
    """,
)
PREFIX_PAGE = Statement(
    "search.prefix_page",
    """
    SELECT t.term, t.part, t.last_key, t.first_key, t.date_of_birth, t.patient_id
    FROM patient_name_terms t
    -- The row comparison alone positions the scan: combined with a scalar bound on term
    -- the B-tree would start at the clinic's first posting and filter its way forward.
    WHERE (t.term, t.part, t.last_key, t.first_key, t.date_of_birth, t.patient_id)
          > (%(b_term)s, %(b_part)s, %(b_last)s, %(b_first)s, %(b_dob)s, %(b_id)s)
      AND t.term < %(hi)s
    ORDER BY t.term, t.part, t.last_key, t.first_key, t.date_of_birth, t.patient_id
    LIMIT %(limit)s
    """,
)
COUNT_TERM_MATCHES = Statement(
    "search.count_term_matches",
    """
    SELECT count(*) AS postings, count(DISTINCT patient_id) AS patients FROM (
        (SELECT patient_id FROM patient_name_terms
         WHERE term = ANY(%(terms)s::text[]) LIMIT %(cap)s)
        UNION ALL
        (SELECT patient_id FROM patient_name_terms
         WHERE term > %(lo)s AND term < %(hi)s LIMIT %(cap)s)
    ) capped
    """,
)


@dataclass(frozen=True, slots=True)
class Posting:
    """One (term, patient) entry with the patient's sort key."""

    term: str
    part: bool
    last_key: str
    first_key: str
    date_of_birth: dt.date
    patient_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class DobProbe:
    """Patients born on an `exact` or `near` date who hold one of `terms` (at most
    `cap`), and patients born on an `exact` date whatever their name (at most `exact_cap`)."""

    exact: list[dt.date]
    near: list[dt.date]
    terms: list[str]
    cap: int
    exact_cap: int


@dataclass(frozen=True, slots=True)
class TermRequest:
    """Read a term's postings after a keyset bound; `bucket` tags the rows it returns."""

    term: str
    bucket: int
    bound: Bound = START_BOUND


class SearchRepository:
    """Read-only search queries within the current clinic transaction."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def summaries(self, ids: list[uuid.UUID], statuses: list[str]) -> list[Row]:
        """Display and ranking fields of live patients among `ids`."""
        if not ids:
            return []
        return await self._db.fetch_all(SUMMARIES, {"ids": ids, "statuses": statuses})

    async def name_keys(self, ids: list[uuid.UUID], statuses: list[str]) -> list[Row]:
        """Ranking fields of live patients among `ids`."""
        if not ids:
            return []
        return await self._db.fetch_all(NAME_KEYS, {"ids": ids, "statuses": statuses})

    async def identifiers_and_terms(
        self,
        *,
        mrns: list[str],
        emails: list[str],
        phones: list[str],
        phone_suffix: str | None,
        dates: list[dt.date],
        postal_codes: list[str],
        keys: list[str],
        prefixes: list[str],
        per_prefix: int,
        frequency_terms: list[str],
        frequency_cap: int,
    ) -> tuple[dict[str, set[uuid.UUID]], list[tuple[str, str, str]], dict[str, int]]:
        """Patients holding any of the identifiers, by kind; (kind, probe, term) for every
        vocabulary term a key or a prefix leads to; and how many patients hold each of
        `frequency_terms`. Independent reads: one round trip."""
        queries: list[tuple[Statement, dict[str, Any]]] = [
            (
                IDENTIFIERS,
                {
                    "mrns": mrns,
                    "emails": emails,
                    "phones": phones,
                    "dates": dates,
                    "postal_codes": postal_codes,
                },
            )
        ]
        if phone_suffix:
            # Phones are stored reversed too, so "ends with" is a prefix range.
            lo = phone_suffix[::-1]
            queries.append((PHONE_SUFFIX, {"lo": lo, "hi": lo + TOP}))
        if keys or prefixes:
            uppers = [prefix + TOP for prefix in prefixes]
            queries.append(
                (
                    VOCABULARY,
                    {
                        "keys": keys,
                        "prefixes": prefixes,
                        "uppers": uppers,
                        "per_prefix": per_prefix,
                    },
                )
            )
        if frequency_terms:
            queries.append((TERM_FREQUENCIES, {"terms": frequency_terms, "cap": frequency_cap}))
        results = iter(await self._db.fetch_batch(queries))
        found: dict[str, set[uuid.UUID]] = {}
        for row in next(results):
            found.setdefault(row["kind"], set()).add(row["id"])
        if phone_suffix:
            found["phone_suffix"] = {row["id"] for row in next(results)}
        terms: list[tuple[str, str, str]] = []
        if keys or prefixes:
            terms = [(row["kind"], row["probe"], row["term"]) for row in next(results)]
        frequencies: dict[str, int] = {}
        if frequency_terms:
            frequencies = {row["term"]: int(row["patients"]) for row in next(results)}
        return found, terms, frequencies

    async def term_frequencies(self, terms: list[str], cap: int) -> dict[str, int]:
        """How many patients hold each of `terms` (counted up to `cap`)."""
        rows = await self._db.fetch_all(TERM_FREQUENCIES, {"terms": terms, "cap": cap})
        return {row["term"]: int(row["patients"]) for row in rows}

    async def born_on(self, dates: list[dt.date]) -> int:
        """How many of the clinic's patients were born on one of `dates`."""
        row = await self._db.fetch_one(BORN_ON_SAMPLE, {"dates": dates})
        return int(row["patients"]) if row else 0

    async def name_candidates(
        self, groups: list[list[str]], statuses: list[str], cap: int
    ) -> list[Row]:
        """Name keys of patients with a term from every group (at most `cap`)."""
        return await self._db.fetch_all(NAME_CANDIDATES, _name_params(groups, statuses, cap))

    async def name_and_dob_candidates(
        self,
        tiers: list[list[list[str]]],
        cap: int,
        born: DobProbe,
        statuses: list[str],
    ) -> tuple[list[list[Row]], list[Row]]:
        """`name_candidates` of each tier, and the patients `born` describes, in one round
        trip (they are independent)."""
        results = await self._db.fetch_batch(
            [(NAME_CANDIDATES, _name_params(groups, statuses, cap)) for groups in tiers]
            + [(DOB_CANDIDATES, dob_params(born, statuses))]
        )
        return results[:-1], results[-1]

    async def similar_terms(self, tokens: list[str], per_token: int) -> list[tuple[str, str]]:
        """(token, term) for the vocabulary terms most similar to each token by trigrams."""
        rows = await self._db.fetch_all(SIMILAR_TERMS, {"tokens": tokens, "per_token": per_token})
        return [(row["token"], row["term"]) for row in rows]

    async def term_pages(
        self, requests: list[TermRequest], per_term: int
    ) -> list[tuple[int, Posting]]:
        """Up to `per_term` postings of each requested term, after its bound, in key order."""
        if not requests:
            return []
        rows = await self._db.fetch_all(TERM_PAGES, term_pages_params(requests, per_term))
        return [(row["bucket"], _posting(row)) for row in rows]

    async def prefix_page(
        self, prefix: str, term_bound: str, bound: Bound, limit: int
    ) -> list[Posting]:
        """Postings of terms that start with `prefix` and are longer, after the bound."""
        rows = await self._db.fetch_all(
            PREFIX_PAGE, prefix_page_params(prefix, term_bound, bound, limit)
        )
        return [_posting(row) for row in rows]

    async def count_term_matches(
        self, terms: list[str], prefix: str | None, cap: int
    ) -> tuple[int, bool]:
        """Patients with one of `terms` or a longer term starting with `prefix`: (count, exact).

        Reads at most `cap` postings per side; past that the count is a lower bound."""
        row = await self._db.fetch_one(
            COUNT_TERM_MATCHES,
            {
                "terms": terms,
                "lo": prefix if prefix else TOP,
                "hi": prefix + TOP if prefix else TOP,
                "cap": cap,
            },
        )
        if row is None:
            return 0, True
        return int(row["patients"]), int(row["postings"]) < cap


def _name_params(groups: list[list[str]], statuses: list[str], cap: int) -> dict[str, Any]:
    terms: list[str] = []
    ends: list[int] = []
    for group in groups:
        terms.extend(group)
        ends.append(len(terms))
    return {"terms": terms, "ends": ends, "statuses": statuses, "cap": cap}


def dob_params(born: DobProbe, statuses: list[str]) -> dict[str, Any]:
    """Parameters of DOB_CANDIDATES (shared with `patient-search explain`)."""
    return {
        "dates": sorted(set(born.exact) | set(born.near)),
        "exact": born.exact,
        "terms": born.terms,
        "statuses": statuses,
        "cap": born.cap,
        "exact_cap": born.exact_cap,
    }


def term_pages_params(requests: list[TermRequest], per_term: int) -> dict[str, Any]:
    """Parameters of TERM_PAGES (shared with `patient-search explain`)."""
    return {
        "terms": [r.term for r in requests],
        "buckets": [r.bucket for r in requests],
        "b_part": [r.bound[0] for r in requests],
        "b_last": [r.bound[1] for r in requests],
        "b_first": [r.bound[2] for r in requests],
        "b_dob": [r.bound[3] for r in requests],
        "b_id": [r.bound[4] for r in requests],
        "per_term": per_term,
    }


def prefix_page_params(prefix: str, term_bound: str, bound: Bound, limit: int) -> dict[str, Any]:
    """Parameters of PREFIX_PAGE (shared with `patient-search explain`)."""
    return {
        "hi": prefix + TOP,
        "b_term": term_bound,
        "b_part": bound[0],
        "b_last": bound[1],
        "b_first": bound[2],
        "b_dob": bound[3],
        "b_id": bound[4],
        "limit": limit,
    }


def _posting(row: Row) -> Posting:
    return Posting(
        term=row["term"],
        part=row["part"],
        last_key=row["last_key"],
        first_key=row["first_key"],
        date_of_birth=row["date_of_birth"],
        patient_id=row["patient_id"],
    )
