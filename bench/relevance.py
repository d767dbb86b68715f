"""Relevance benchmark: does the intended patient come back first for realistic, noisy queries?

What it does:

1. Uses the dedicated database ``patient_search_relevance`` on the server of
   ``PATIENT_SEARCH_DATABASE_URL`` (creating and migrating it when missing) and seeds the
   clinic ``relevance`` with ``--patients`` synthetic patients through the real import
   path. The data set is reused across runs; it is rebuilt only when ``--patients`` or
   ``--seed`` changed (the database comment records which data set it holds).
2. Derives ``--per-kind`` noisy queries of each kind from a random sample of patients
   (``derive_queries``: a pure function of the patients and the random generator).
3. Runs every query through the real API in-process (httpx.ASGITransport, limit=10) and
   measures top-1, top-10, MRR@10 and latency per kind.
4. Runs two baselines on the same data and queries directly in SQL (superuser, no RLS):
   the seed app's full-text search and a naive ILIKE-per-token search (on an indexed
   session snapshot of the clinic, checked against the verbatim SQL on a sample).
5. Prints a markdown table and writes it to ``bench/results/relevance-<date>.md``
   (``--json PATH`` also writes every query's outcome).

Exit status: 0 (it is a report), 1 when the API answered a query with an error, 2 when the
database could not be set up.

Run (from the repository root, with ``make services`` up):
    .venv/bin/python bench/relevance.py [--patients 20000] [--per-kind 300] [--seed 11]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import random
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from nicknames import NickNamer
from psycopg import sql
from pydantic import PostgresDsn
from rapidfuzz.distance import OSA

from patient_search import cli
from patient_search.app import create_app
from patient_search.auth.tokens import issue_token
from patient_search.importing.rows import RawRecord
from patient_search.search.names import fold, name_tokens, phonetic_codes, typo_budget
from patient_search.seeding.generator import generate_patients
from patient_search.settings import Settings

DATABASE = "patient_search_relevance"
CLINIC = "relevance"
MRN_PREFIX = "R-"
API_LIMIT = 10
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Misses listed per kind in the markdown report: enough to see a pattern, short to read.
MISS_EXAMPLES = 5

NAME_KINDS = (
    "exact_full",
    "last_first_comma",
    "swapped",
    "prefix",
    "typo_deletion",
    "typo_insertion",
    "typo_substitution",
    "typo_transposition",
    "nickname",
    "phonetic",
    "accents_stripped",
    "accents_added",
)
IDENTIFIER_KINDS = ("name_dob", "phone", "email", "mrn")
KINDS = NAME_KINDS + IDENTIFIER_KINDS

# The token pattern of the product's tokenizer (names.py): letters and digits, no "_".
_TOKEN = re.compile(r"[^\W_]+")

# Staggered QWERTY: a key's neighbours are left/right on its row, the two keys above
# (same index and one right) and the two below (one left and same index).
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _adjacent_keys() -> dict[str, str]:
    neighbours: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for i, key in enumerate(row):
            near = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            if r > 0:
                above = _ROWS[r - 1]
                near += [above[j] for j in (i, i + 1) if 0 <= j < len(above)]
            if r + 1 < len(_ROWS):
                below = _ROWS[r + 1]
                near += [below[j] for j in (i - 1, i) if 0 <= j < len(below)]
            neighbours[key] = "".join(near)
    return neighbours


ADJACENT_KEYS = _adjacent_keys()

# One-rule respellings a person might write after hearing a name: (label, pattern, repl).
# Applied to one folded token at one match; kept only if Double Metaphone agrees.
PHONETIC_RULES: tuple[tuple[str, str, str], ...] = (
    ("ph->f", r"ph", "f"),
    ("f->ph", r"f", "ph"),
    ("c->k", r"c(?=[aou]|$)", "k"),
    ("k->c", r"k(?=[aou])", "c"),
    ("ck->k", r"ck", "k"),
    ("y->i", r"y", "i"),
    ("i->y", r"i", "y"),
    ("double->single", r"([bcdfgklmnprstz])\1", r"\1"),
    ("single->double", r"(?<=[aeiou])([bdfglmnprt])(?=[aeiouy])", r"\1\1"),
    ("ie->y", r"ie$", "y"),
    ("y->ie", r"(?<=[^aeiou])y$", "ie"),
    ("drop silent e", r"(?<=[^aeiouy])e$", ""),
    ("add silent e", r"(?<=[aeiou][bdklmnprst])$", "e"),
    ("s->z", r"(?<=[aeiou])s(?=[aeiou])", "z"),
    ("z->s", r"(?<=[aeiou])z(?=[aeiou])", "s"),
)

# US numbers written the ways front-desk staff write them; {a}{e}{l}: area, exchange, line.
PHONE_FORMATS = (
    "({a}) {e}-{l}",
    "{a}-{e}-{l}",
    "{a}.{e}.{l}",
    "{a}{e}{l}",
    "{a} {e} {l}",
    "+1 {a}-{e}-{l}",
    "1 ({a}) {e}-{l}",
)
_E164_US = re.compile(r"^\+1(\d{3})(\d{3})(\d{4})$")


# ------------------------------------------------------------------------ data model


@dataclass(frozen=True, slots=True)
class Patient:
    """One patient as stored (read back from the database, so the import's cleaning shows)."""

    id: str
    mrn: str
    first_name: str | None
    middle_name: str | None
    last_name: str
    date_of_birth: dt.date | None
    phones: tuple[tuple[str, str | None], ...]  # (as typed, E.164 or None)
    email: str | None
    email_normalized: str | None


@dataclass(frozen=True, slots=True)
class Query:
    """A noisy query, the patient it was derived from, and who else matches it as well."""

    kind: str
    text: str
    patient_id: str
    # Other patients an ideal search could not tell apart from the intended one: the same
    # folded first+last name (name kinds; prefix and nickname: see _equivalents), phone,
    # email, or last name + DOB.
    equivalents: frozenset[str] = frozenset()
    detail: str = ""


@dataclass(slots=True)
class Outcome:
    """What every engine returned for one query (ids, best first)."""

    query: Query
    ours: list[str]
    latency_ms: float
    top_match: str | None = None  # the product's `match` label of its first result
    seed: list[str] | None = None
    naive: list[str] | None = None


def rank_of(patient_id: str, ranked: Sequence[str]) -> int | None:
    """1-based position of the patient in a result list, or None when absent."""
    try:
        return ranked.index(patient_id) + 1
    except ValueError:
        return None


# ------------------------------------------------------------------------ name helpers


def _key(text: str | None) -> str:
    """A name as the product compares it: folded tokens, punctuation dropped."""
    return " ".join(name_tokens(text or ""))


def _name_key(patient: Patient) -> tuple[str, str]:
    return _key(patient.first_name), _key(patient.last_name)


def _strip_accents(text: str) -> str:
    """Accents off, case kept: "José Núñez" -> "Jose Nunez" (fold() also lower-cases)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Letters that are not base + mark (ł, ø) have no decomposition: fold them.
    return stripped if stripped.isascii() else fold(stripped)


def _recase(new: str, like: str) -> str:
    return new.capitalize() if like[:1].isupper() else new


def _replace_span(text: str, span: tuple[int, int], new: str) -> str:
    return text[: span[0]] + new + text[span[1] :]


def _typo_tokens(name: str | None) -> list[re.Match[str]]:
    """Tokens of a name that can take a typo: plain ASCII letters, 4+ of them."""
    return [
        m
        for m in _TOKEN.finditer(name or "")
        if m.group().isascii() and m.group().isalpha() and typo_budget(m.group()) > 0
    ]


def _edit_once(token: str, kind: str, rng: random.Random) -> str | None:
    """One edit of `kind` at a random position; None when the token cannot take it."""
    n = len(token)
    if kind == "deletion":
        i = rng.randrange(n)
        return token[:i] + token[i + 1 :]
    if kind == "insertion":
        # A fat finger: a key next to the letter before or after the insertion point.
        i = rng.randrange(n + 1)
        anchor = token[i - 1] if i > 0 and (i == n or rng.random() < 0.5) else token[i]
        return token[:i] + rng.choice(ADJACENT_KEYS.get(anchor, anchor)) + token[i:]
    if kind == "substitution":
        positions = [i for i, ch in enumerate(token) if ch in ADJACENT_KEYS]
        if not positions:
            return None
        i = rng.choice(positions)
        return token[:i] + rng.choice(ADJACENT_KEYS[token[i]]) + token[i + 1 :]
    if kind == "transposition":
        positions = [i for i in range(n - 1) if token[i] != token[i + 1]]
        if not positions:
            return None
        i = rng.choice(positions)
        return token[:i] + token[i + 1] + token[i] + token[i + 2 :]
    raise ValueError(f"unknown edit kind {kind!r}")


def make_typo(
    token: str, kind: str, rng: random.Random, vocabulary: set[str]
) -> tuple[str, int] | None:
    """`token` (folded) with as many edits as the product's budget allows, and that count.

    The count is the budget of the true token (1 for 4-7 letters, 2 for 8+) but never more
    than the typed token's own budget (two deletions turn 8 letters into 6, whose budget is
    1), so every query is within what the product promises. A typo that spells another
    name of the clinic is rejected: an exact match on that name rightly ranks first.
    """
    for edits in range(typo_budget(token), 0, -1):
        for _ in range(20):
            typed: str | None = token
            for _ in range(edits):
                typed = _edit_once(typed, kind, rng) if typed else None
            if (
                typed
                and OSA.distance(token, typed) == edits
                and typo_budget(typed) >= edits
                and typed not in vocabulary
            ):
                return typed, edits
    return None


def respell(token: str, rng: random.Random, vocabulary: set[str]) -> tuple[str, str] | None:
    """A one-rule phonetic respelling with the same Double Metaphone codes, and the rule."""
    codes = phonetic_codes(token)
    if not codes:
        return None
    options: list[tuple[str, str]] = []
    for label, pattern, repl in PHONETIC_RULES:
        for m in re.finditer(pattern, token):
            new = token[: m.start()] + m.expand(repl) + token[m.end() :]
            if new != token and len(new) > 1 and new not in vocabulary:
                options.append((new, label))
    rng.shuffle(options)
    for new, label in options:
        if phonetic_codes(new) == codes:
            return new, label
    return None


# ------------------------------------------------------------------------ query derivation

Deriver = Callable[[Patient, random.Random], tuple[str, str] | None]


@dataclass(slots=True)
class _Context:
    """Lookups over the whole clinic that the derivers and the equivalence check need."""

    nicknamer: NickNamer = field(default_factory=NickNamer)
    vocabulary: set[str] = field(default_factory=set)
    accented: dict[str, str] = field(default_factory=dict)  # folded token -> accented form
    by_name: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    # (first 3 letters of the first name, first 4 of the last): who a prefix query fits.
    by_prefix: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    by_phone: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_email: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_last_dob: dict[tuple[str, dt.date], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )

    @classmethod
    def of(cls, patients: Sequence[Patient]) -> _Context:
        ctx = cls()
        spellings: dict[str, Counter[str]] = defaultdict(Counter)
        for p in patients:
            for name in (p.first_name, p.middle_name, p.last_name):
                ctx.vocabulary.update(name_tokens(name or ""))
                for m in _TOKEN.finditer(name or ""):
                    if not m.group().isascii():
                        spellings[fold(m.group())][m.group()] += 1
            ctx.by_name[_name_key(p)].add(p.id)
            first, last = name_tokens(p.first_name or ""), name_tokens(p.last_name)
            if first and last:
                ctx.by_prefix[(first[0][:3], last[0][:4])].add(p.id)
            for _, e164 in p.phones:
                if e164:
                    ctx.by_phone[e164].add(p.id)
            if p.email_normalized:
                ctx.by_email[p.email_normalized].add(p.id)
            if p.date_of_birth:
                ctx.by_last_dob[(_key(p.last_name), p.date_of_birth)].add(p.id)
        # The most common accented spelling of each name, for the accents_added kind.
        ctx.accented = {key: counts.most_common(1)[0][0] for key, counts in spellings.items()}
        return ctx


def _derivers(ctx: _Context) -> dict[str, Deriver]:
    """Per kind: patient -> (query text, detail), or None when the patient cannot yield one."""
    nicknamer = ctx.nicknamer

    def named(p: Patient) -> bool:
        return bool(p.first_name and _key(p.first_name) and _key(p.last_name))

    def exact_full(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        return (f"{p.first_name} {p.last_name}", "") if named(p) else None

    def last_first_comma(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        return (f"{p.last_name}, {p.first_name}", "") if named(p) else None

    def swapped(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        return (f"{p.last_name} {p.first_name}", "") if named(p) else None

    def prefix(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        # The first token of each name, truncated: "John de la Cruz" -> "joh de".
        if not named(p):
            return None
        first, last = name_tokens(p.first_name or "")[0], name_tokens(p.last_name)[0]
        return f"{first[:3]} {last[:4]}", ""

    def typo(edit: str) -> Deriver:
        def derive(p: Patient, rng: random.Random) -> tuple[str, str] | None:
            if not named(p):
                return None
            fields = {"first": p.first_name or "", "last": p.last_name}
            options = {f: toks for f, name in fields.items() if (toks := _typo_tokens(name))}
            if not options:
                return None
            which = rng.choice(sorted(options))
            m = rng.choice(options[which])
            made = make_typo(m.group().lower(), edit, rng, ctx.vocabulary)
            if made is None:
                return None
            typed, edits = made
            fields[which] = _replace_span(fields[which], m.span(), _recase(typed, m.group()))
            detail = f"{which}: {m.group()} -> {typed} ({edits} edit{'s' * (edits > 1)})"
            return f"{fields['first']} {fields['last']}", detail

        return derive

    def nickname(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        if not named(p):
            return None
        tokens = list(_TOKEN.finditer(p.first_name or ""))
        if len(tokens) != 1:
            return None
        own = fold(tokens[0].group())
        nicks = sorted(
            n for n in nicknamer.nicknames_of(own) if n.isalpha() and len(n) > 1 and n != own
        )
        if not nicks:
            return None
        nick = rng.choice(nicks).capitalize()
        return f"{nick} {p.last_name}", f"{p.first_name} -> {nick}"

    def phonetic(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        if not named(p):
            return None
        fields = {"first": p.first_name or "", "last": p.last_name}
        spots = [(f, m) for f, name in fields.items() for m in _TOKEN.finditer(name)]
        rng.shuffle(spots)
        for which, m in spots:
            made = respell(fold(m.group()), rng, ctx.vocabulary)
            if made is not None:
                new, rule = made
                fields[which] = _replace_span(fields[which], m.span(), _recase(new, m.group()))
                return f"{fields['first']} {fields['last']}", f"{m.group()} -> {new} ({rule})"
        return None

    def accents_stripped(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        full = f"{p.first_name} {p.last_name}"
        if not named(p) or full.isascii():
            return None
        return f"{_strip_accents(p.first_name or '')} {_strip_accents(p.last_name)}", ""

    def accents_added(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        # A patient registered without diacritics, searched by someone who types them.
        if not named(p) or not f"{p.first_name} {p.last_name}".isascii():
            return None
        fields = {"first": p.first_name or "", "last": p.last_name}
        changed = False
        for which, name in fields.items():
            for m in reversed(list(_TOKEN.finditer(name))):
                accented = ctx.accented.get(fold(m.group()))
                if accented:
                    name = _replace_span(name, m.span(), accented)
                    changed = True
            fields[which] = name
        return (f"{fields['first']} {fields['last']}", "") if changed else None

    def name_dob(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        if not p.date_of_birth:
            return None
        return f"{p.last_name} {p.date_of_birth:%m/%d/%Y}", ""

    def phone(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        usable = [(raw, m) for raw, e164 in p.phones if e164 and (m := _E164_US.match(e164))]
        if not usable:
            return None
        raw, m = rng.choice(usable)
        a, e, line = m.groups()
        formats = [f for f in PHONE_FORMATS if f.format(a=a, e=e, l=line) != raw]
        text = rng.choice(formats).format(a=a, e=e, l=line)
        return text, f"stored as {raw}"

    def email(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        if not p.email:
            return None
        shouted = p.email.upper()
        # Stored in capitals already: the lower-case spelling is the different one.
        return (shouted if shouted != p.email else p.email.lower()), ""

    def mrn(p: Patient, rng: random.Random) -> tuple[str, str] | None:
        return p.mrn, ""

    return {
        "exact_full": exact_full,
        "last_first_comma": last_first_comma,
        "swapped": swapped,
        "prefix": prefix,
        "typo_deletion": typo("deletion"),
        "typo_insertion": typo("insertion"),
        "typo_substitution": typo("substitution"),
        "typo_transposition": typo("transposition"),
        "nickname": nickname,
        "phonetic": phonetic,
        "accents_stripped": accents_stripped,
        "accents_added": accents_added,
        "name_dob": name_dob,
        "phone": phone,
        "email": email,
        "mrn": mrn,
    }


def _equivalents(kind: str, p: Patient, text: str, ctx: _Context) -> frozenset[str]:
    """Patients other than `p` that match the query exactly as well as `p` does."""
    if kind == "mrn":
        return frozenset()
    if kind == "phone":
        same = ctx.by_phone.get("+1" + re.sub(r"\D", "", text)[-10:], set())
    elif kind == "email":
        same = ctx.by_email.get(p.email_normalized or "", set())
    elif kind == "name_dob":
        key = (_key(p.last_name), p.date_of_birth or dt.date.min)
        same = ctx.by_last_dob.get(key, set())
    elif kind == "prefix":
        # "rob gonz" fits Robert and Robin Gonzalez alike.
        first, last = name_tokens(text)
        same = ctx.by_prefix.get((first, last), set())
    elif kind == "nickname":
        # "Bill Miller" stands for William Miller as well (or Robert, per the nickname data).
        nick = name_tokens(text)[0]
        last = _key(p.last_name)
        firsts = (
            {nick} | {_key(n) for n in ctx.nicknamer.canonicals_of(nick)} | {_key(p.first_name)}
        )
        same = set().union(*(ctx.by_name.get((f, last), set()) for f in firsts))
    else:
        same = ctx.by_name[_name_key(p)]
    return frozenset(same - {p.id})


def derive_queries(patients: Sequence[Patient], rng: random.Random, per_kind: int) -> list[Query]:
    """Up to `per_kind` noisy queries of every kind, each from a different random patient.

    Pure: the same patients (in the same order) and generator state give the same queries.
    Each kind draws from its own generator seeded from `rng`, so adding a kind or changing
    one's rules leaves the other kinds' samples unchanged.
    """
    ctx = _Context.of(patients)
    derivers = _derivers(ctx)
    base = rng.getrandbits(64)
    queries: list[Query] = []
    for kind in KINDS:
        kind_rng = random.Random(f"{base}:{kind}")
        order = list(range(len(patients)))
        kind_rng.shuffle(order)
        taken = 0
        for index in order:
            if taken == per_kind:
                break
            patient = patients[index]
            derived = derivers[kind](patient, kind_rng)
            if derived is None:
                continue
            text, detail = derived
            equivalents = _equivalents(kind, patient, text, ctx)
            queries.append(Query(kind, text, patient.id, equivalents, detail))
            taken += 1
    return queries


# ------------------------------------------------------------------------ database setup


def _database_url(base: str, dbname: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path="/" + dbname))


def _dataset_tag(patients: int, seed: int) -> str:
    return (
        f"relevance data set: clinic={CLINIC} patients={patients} seed={seed} prefix={MRN_PREFIX}"
    )


def _admin(url: str, statement: sql.SQL | sql.Composed, params: Sequence[Any] = ()) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _database_comment(server_url: str, database: str = DATABASE) -> str | None:
    rows = _admin(
        server_url,
        sql.SQL(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '')"
            " FROM pg_database WHERE datname = %s"
        ),
        (database,),
    )
    return rows[0][0] if rows else None


def _clinic_count(url: str) -> int:
    rows = _admin(
        url,
        sql.SQL("SELECT count(*) FROM patients WHERE clinic_id = %s AND deleted_at IS NULL"),
        (CLINIC,),
    )
    return int(rows[0][0])


def prepare_database(patients: int, seed: int, database: str = DATABASE) -> Settings:
    """Settings pointing at the benchmark database, created, migrated and seeded."""

    base = Settings()
    server_url = str(base.database_url)  # its own database exists: connect there for DDL
    url = _database_url(server_url, database)
    # Uncached and unlimited: every query must reach the search itself, to be measured and
    # judged, at the benchmark's pace (far beyond a front desk's search rate).
    settings = Settings(
        database_url=PostgresDsn(url),
        slow_query_ms=60_000,
        cache_enabled=False,
        search_rate_per_minute=0,
    )
    tag = _dataset_tag(patients, seed)
    name = sql.Identifier(database)

    comment = _database_comment(server_url, database)
    if comment is not None and comment != tag:
        # Another data set (or an interrupted seed): this database is the benchmark's alone,
        # so rebuild it rather than mix two data sets in one clinic.
        log(f"setup: {database} holds {comment or 'an unfinished seed'!r}; recreating it")
        _admin(server_url, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))
        comment = None
    if comment is None:
        log(f"setup: creating database {database}")
        _admin(server_url, sql.SQL("CREATE DATABASE {}").format(name))
    with contextlib.redirect_stdout(sys.stderr):
        cli.migrate(settings)

    if comment == tag and _clinic_count(url) == patients:
        log(f"setup: reusing {patients:,} patients of clinic {CLINIC!r} (seed {seed})")
        return settings
    log(f"setup: seeding {patients:,} patients into clinic {CLINIC!r} (seed {seed})")
    generated = generate_patients(patients, seed=seed, mrn_prefix=MRN_PREFIX)
    records = (RawRecord(line, p.as_import_row()) for line, p in enumerate(generated, start=2))
    with contextlib.redirect_stdout(sys.stderr):
        status = cli._run_import(settings, CLINIC, records, CLINIC)
    loaded = _clinic_count(url)
    if status != 0 or loaded != patients:
        raise RuntimeError(f"seeding loaded {loaded} of {patients} patients (status {status})")
    _admin(url, sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(tag)))
    _admin(url, sql.SQL("ANALYZE"))
    return settings


def patient_from_row(r: tuple[Any, ...]) -> Patient:
    """A Patient from a row of (id, mrn, first, middle, last, dob, email, email_normalized,
    phones as [(raw, e164)])."""
    return Patient(
        id=r[0],
        mrn=r[1],
        first_name=r[2],
        middle_name=r[3],
        last_name=r[4],
        date_of_birth=r[5],
        email=r[6],
        email_normalized=r[7],
        phones=tuple((raw, e164) for raw, e164 in (r[8] or [])),
    )


# A clinic's live patients as `patient_from_row` reads them (callers add ORDER BY / LIMIT).
PATIENT_ROWS_SQL = """
    SELECT p.id::text, p.mrn, p.first_name, p.middle_name, p.last_name, p.date_of_birth,
           p.email, p.email_normalized,
           ARRAY(SELECT ARRAY[ph.raw, ph.e164] FROM patient_phones ph
                 WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id
                 ORDER BY ph.position) AS phones
    FROM patients p
    WHERE p.clinic_id = %(clinic)s AND p.deleted_at IS NULL
"""


def load_patients(url: str) -> list[Patient]:
    """Every live patient of the clinic, in MRN order (the order derive_queries samples)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(PATIENT_ROWS_SQL + " ORDER BY p.mrn", {"clinic": CLINIC}).fetchall()
    return [patient_from_row(r) for r in rows]


# ------------------------------------------------------------------------ engines


class ApiError(Exception):
    """The API answered a benchmark query with an error."""


async def run_api(settings: Settings, queries: Sequence[Query]) -> list[Outcome]:
    """Every query through the real app, one at a time (latency is per request, in-process)."""

    app = create_app(settings)
    token = issue_token(settings.effective_jwt_secret, clinic_id=CLINIC, user_id="relevance")
    headers = {"Authorization": f"Bearer {token}"}
    outcomes: list[Outcome] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            # Warm the pool and the caches so the first kind's latencies are not penalised.
            for text in ("smith", "maria garcia", "john"):
                await client.get("/v1/patients", params={"q": text}, headers=headers)
            started = time.perf_counter()
            for i, query in enumerate(queries, start=1):
                t0 = time.perf_counter()
                try:
                    response = await client.get(
                        "/v1/patients",
                        params={"q": query.text, "limit": API_LIMIT},
                        headers=headers,
                    )
                except Exception as exc:  # the transport re-raises what the app raised
                    raise ApiError(f"{query.kind} query {query.text!r} raised {exc!r}") from exc
                ms = (time.perf_counter() - t0) * 1000
                if response.status_code != 200:
                    raise ApiError(
                        f"{query.kind} query {query.text!r}: HTTP {response.status_code} "
                        f"{response.text[:500]}"
                    )
                items = response.json()["items"]
                top = items[0]["match"] if items else None
                outcomes.append(Outcome(query, [it["id"] for it in items], ms, top))
                if i % 500 == 0 or i == len(queries):
                    rate = i / (time.perf_counter() - started)
                    log(f"api: {i}/{len(queries)} queries ({rate:.0f}/s)")
    return outcomes


# The two baselines, as the brief states them. `{source}` is `patients` for the verbatim
# query; the snapshot below holds the same rows with the expressions precomputed.
_FULL_NAME = "(first_name || ' ' || coalesce(middle_name, '') || ' ' || last_name)"
_TSVECTOR = (
    "to_tsvector('simple', coalesce(first_name, '') || ' ' || coalesce(middle_name, '')"
    " || ' ' || last_name)"
)
# id only makes ties deterministic between runs; it does not change which rows qualify.
_BASELINE_ORDER = " ORDER BY last_name, first_name, id LIMIT 10"
_LIVE = "clinic_id = %(clinic)s AND deleted_at IS NULL"
SNAPSHOT = "relevance_baseline"
SNAPSHOT_SQL = f"""
    CREATE TEMP TABLE {SNAPSHOT} AS
        SELECT clinic_id, id, first_name, middle_name, last_name, deleted_at,
               {_TSVECTOR} AS tsv, {_FULL_NAME} AS full_name
        FROM patients WHERE {_LIVE};
    CREATE INDEX ON {SNAPSHOT} USING gin (tsv);
    ANALYZE {SNAPSHOT};
"""
# ILIKE '%t%' costs ~1 µs a row with case folding; a trigram index answers it in well under a
# millisecond with the same rows. Optional: without pg_trgm the scans are just slower.
TRIGRAM_SQL = f"""
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX ON {SNAPSHOT} USING gin (full_name gin_trgm_ops);
    ANALYZE {SNAPSHOT};
"""
# How many name queries also run verbatim against `patients` to prove the snapshot agrees.
LITERAL_CHECKS = 60


def _like_escape(token: str) -> str:
    return token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def seed_sql(verbatim: bool) -> sql.SQL:
    """The seed app's search: full-text match on the whole name, ordered by name."""
    if verbatim:
        where = f"{_TSVECTOR} @@ plainto_tsquery('simple', %(q)s)"
        return sql.SQL(f"SELECT id::text FROM patients WHERE {_LIVE} AND {where}{_BASELINE_ORDER}")
    where = "tsv @@ plainto_tsquery('simple', %(q)s)"
    return sql.SQL(f"SELECT id::text FROM {SNAPSHOT} WHERE {_LIVE} AND {where}{_BASELINE_ORDER}")


def naive_sql(tokens: Sequence[str], verbatim: bool) -> sql.Composed:
    """Every whitespace token must be a substring of the full name (ILIKE), ordered by name."""
    name = sql.SQL(_FULL_NAME if verbatim else "full_name")
    source = sql.Identifier("patients" if verbatim else SNAPSHOT)
    conditions = [
        sql.SQL("{} ILIKE '%%' || {} || '%%'").format(name, sql.Literal(_like_escape(t)))
        for t in tokens
    ]
    return sql.SQL("SELECT id::text FROM {} WHERE " + _LIVE + " AND {}" + _BASELINE_ORDER).format(
        source, sql.SQL(" AND ").join(conditions)
    )


def _baselines_of(
    conn: psycopg.Connection[Any], text: str, verbatim: bool
) -> tuple[list[str], list[str]]:
    params = {"clinic": CLINIC, "q": text}
    seed = [r[0] for r in conn.execute(seed_sql(verbatim), params)]
    tokens = text.replace(",", " ").split()
    naive = [r[0] for r in conn.execute(naive_sql(tokens, verbatim), params)]
    return seed, naive


def run_baselines(url: str, outcomes: Sequence[Outcome]) -> None:
    """Fill in both baselines for name-bearing queries (identifier kinds stay n/a).

    Verbatim, each query scans the clinic recomputing the name expressions (~20-40 ms a
    query, several minutes in all), which would blow the time budget. A session snapshot
    with the expressions precomputed and indexed (GIN on the tsvector, as the seed app's
    index; trigrams for ILIKE) returns the same rows, much faster; a sample of queries is
    run both ways to prove it.
    """
    named = [o for o in outcomes if o.query.kind in NAME_KINDS]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET jit = off")  # compiling costs more than these small scans
        # Several statements in one call: psycopg allows it only without parameters.
        conn.execute(SNAPSHOT_SQL.replace("%(clinic)s", sql.Literal(CLINIC).as_string(conn)))
        try:
            conn.execute(TRIGRAM_SQL)
        except psycopg.Error as exc:
            log(f"baselines: no trigram index ({exc}); the ILIKE baseline scans instead")
        for i, outcome in enumerate(named, start=1):
            outcome.seed, outcome.naive = _baselines_of(conn, outcome.query.text, verbatim=False)
            if i % 1000 == 0:
                log(f"baselines: {i}/{len(named)} queries")
        step = max(1, len(named) // LITERAL_CHECKS)
        for outcome in named[::step]:
            verbatim = _baselines_of(conn, outcome.query.text, verbatim=True)
            if verbatim != (outcome.seed, outcome.naive):
                raise RuntimeError(
                    f"baseline snapshot disagrees with the verbatim SQL on {outcome.query.text!r}"
                )
    log(f"baselines: {len(named)} queries done, {len(named[::step])} checked verbatim")


# ------------------------------------------------------------------------ metrics and report


@dataclass(slots=True)
class Row:
    """One line of the results table."""

    kind: str
    n: int
    top1: float
    top1_equal: float  # first result is the intended patient or an equally good one
    top10: float
    mrr: float
    ambiguous: float  # share of queries with an equally good other patient
    seed_top10: float | None
    naive_top10: float | None
    p50_ms: float
    p95_ms: float


def _share(values: Iterable[bool]) -> float:
    items = list(values)
    return 100 * sum(items) / len(items) if items else 0.0


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def summarise(kind: str, outcomes: Sequence[Outcome]) -> Row:
    """Metrics over a group of outcomes (one kind, or several for the overall rows)."""
    ranks = [rank_of(o.query.patient_id, o.ours) for o in outcomes]
    equal_first = [
        bool(o.ours) and (o.ours[0] == o.query.patient_id or o.ours[0] in o.query.equivalents)
        for o in outcomes
    ]
    with_baselines = [o for o in outcomes if o.seed is not None and o.naive is not None]
    seed = naive = None
    if with_baselines:
        seed = _share(o.query.patient_id in (o.seed or []) for o in with_baselines)
        naive = _share(o.query.patient_id in (o.naive or []) for o in with_baselines)
    latencies = [o.latency_ms for o in outcomes]
    return Row(
        kind=kind,
        n=len(outcomes),
        top1=_share(r == 1 for r in ranks),
        top1_equal=_share(equal_first),
        top10=_share(r is not None for r in ranks),
        mrr=sum(1 / r for r in ranks if r) / len(ranks) if ranks else 0.0,
        ambiguous=_share(bool(o.query.equivalents) for o in outcomes),
        seed_top10=seed,
        naive_top10=naive,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p95_ms=_p95(latencies),
    )


def table_rows(outcomes: Sequence[Outcome]) -> list[Row]:
    """A row per kind, then overall rows for the name kinds, identifier kinds and all."""
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_kind[o.query.kind].append(o)
    rows = [summarise(kind, by_kind[kind]) for kind in KINDS if by_kind[kind]]
    names = [o for o in outcomes if o.query.kind in NAME_KINDS]
    identifiers = [o for o in outcomes if o.query.kind in IDENTIFIER_KINDS]
    rows.append(summarise("**overall: name kinds**", names))
    rows.append(summarise("**overall: identifier kinds**", identifiers))
    overall = summarise("**overall: all**", outcomes)
    # The baselines were not run on identifier kinds: an "all" figure would mix n/a in.
    overall.seed_top10 = overall.naive_top10 = None
    rows.append(overall)
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown_table(rows: Sequence[Row]) -> str:
    """The results as a GitHub markdown table."""
    header = (
        "| kind | n | ours top1 | ours top10 | ours MRR | seed top10 | naive top10 "
        "| ours p95 ms | ambiguous % | ours top1 (or equal) | ours p50 ms |"
    )
    lines = [header, "|" + "|".join(["---"] + ["---:"] * 10) + "|"]
    for r in rows:
        lines.append(
            f"| {r.kind} | {r.n} | {r.top1:.1f} | {r.top10:.1f} | {r.mrr:.3f} "
            f"| {_pct(r.seed_top10)} | {_pct(r.naive_top10)} | {r.p95_ms:.1f} "
            f"| {r.ambiguous:.1f} | {r.top1_equal:.1f} | {r.p50_ms:.1f} |"
        )
    return "\n".join(lines)


def _describe(p: Patient | None) -> str:
    if p is None:
        return "(nothing)"
    middle = f" {p.middle_name}" if p.middle_name else ""
    return f"{p.first_name}{middle} {p.last_name} ({p.date_of_birth}, {p.mrn})"


def misses_markdown(outcomes: Sequence[Outcome], patients: dict[str, Patient]) -> str:
    """A few queries per kind where the intended patient was not first."""
    lines: list[str] = []
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if not o.ours or o.ours[0] != o.query.patient_id:
            by_kind[o.query.kind].append(o)
    for kind in KINDS:
        # Misses to an equally good patient are the data's ambiguity, not the search's
        # fault: list the others first.
        misses = sorted(
            by_kind.get(kind, []),
            key=lambda o: o.ours[:1] != [] and o.ours[0] in o.query.equivalents,
        )
        if not misses:
            continue
        real = sum(1 for o in misses if not o.ours or o.ours[0] not in o.query.equivalents)
        lines.append(f"\n**{kind}**: {len(misses)} not first, {real} of them to a worse match\n")
        for o in misses[:MISS_EXAMPLES]:
            rank = rank_of(o.query.patient_id, o.ours)
            first = patients.get(o.ours[0]) if o.ours else None
            equal = (
                " — an equally good patient" if first and first.id in o.query.equivalents else ""
            )
            detail = f" [{o.query.detail}]" if o.query.detail else ""
            lines.append(
                f"- `{o.query.text}`{detail} → intended {_describe(patients[o.query.patient_id])}"
                f", at rank {rank or '>10'}; first: {_describe(first)}"
                f" as {o.top_match or '-'}{equal}"
            )
    return "\n".join(lines)


def write_report(
    path: Path,
    table: str,
    misses: str,
    args: argparse.Namespace,
    elapsed: float,
    server: str,
) -> None:
    """The markdown report: parameters, the table, how to read it, and example misses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"""# Relevance benchmark — {dt.date.today().isoformat()}

Clinic `{CLINIC}` in database `{DATABASE}`: {args.patients:,} synthetic patients
(seed {args.seed}), up to {args.per_kind} queries per kind, API `limit={API_LIMIT}`.
Run time {elapsed:.0f} s. Server: {server}.

Percentages are of the kind's queries. top1/top10: the intended patient is first / in the
first 10. MRR is over the first 10 (0 when absent). "ambiguous %": queries for which another
patient matches exactly as well (same folded first+last name; for prefix, the same two
prefixes; for nickname, the same last name and a first name the nickname stands for; same
phone; same email; same last name + DOB). "top1 (or equal)": the first result is the
intended patient or one of those. Baselines are not run for identifier kinds (n/a).
Latency is in-process, one request at a time, informational only.

{table}

## Queries where the intended patient was not first (first {MISS_EXAMPLES} per kind)
{misses}
"""
    path.write_text(text, encoding="utf-8")


def write_json(path: Path, rows: Sequence[Row], outcomes: Sequence[Outcome]) -> None:
    """Every row and every query's outcome, for diffing runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "rows": [asdict(r) for r in rows],
        "queries": [
            {
                "kind": o.query.kind,
                "text": o.query.text,
                "detail": o.query.detail,
                "patient_id": o.query.patient_id,
                "equivalents": sorted(o.query.equivalents),
                "ours": o.ours,
                "ours_rank": rank_of(o.query.patient_id, o.ours),
                "top_match": o.top_match,
                "seed": o.seed,
                "naive": o.naive,
                "latency_ms": round(o.latency_ms, 3),
            }
            for o in outcomes
        ],
    }
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


# ------------------------------------------------------------------------ main


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20_000, help="clinic size (default 20000)")
    parser.add_argument("--per-kind", type=int, default=300, help="queries per kind (default 300)")
    parser.add_argument("--seed", type=int, default=11, help="data and sampling seed (default 11)")
    parser.add_argument("--json", type=Path, help="also write every query's outcome here")
    parser.add_argument(
        "--output", type=Path, help="markdown report (default bench/results/relevance-DATE.md)"
    )
    args = parser.parse_args(argv)
    if args.patients < 1 or args.per_kind < 1:
        parser.error("--patients and --per-kind must be at least 1")
    return args


def _server_version(url: str) -> str:
    rows = _admin(url, sql.SQL("SHOW server_version"))
    return f"PostgreSQL {rows[0][0]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Set up, query, score and report; see the module docstring for the exit status."""
    args = _args(argv)
    started = time.perf_counter()
    try:
        settings = prepare_database(args.patients, args.seed)
    except (psycopg.Error, RuntimeError, ValueError) as exc:  # ValueError: invalid settings
        log(f"relevance: cannot set up the benchmark database: {exc}")
        return 2
    url = str(settings.database_url)
    patients = load_patients(url)
    queries = derive_queries(patients, random.Random(args.seed), args.per_kind)
    counts = Counter(q.kind for q in queries)
    log("queries: " + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS))

    api_started = time.perf_counter()
    try:
        outcomes = asyncio.run(run_api(settings, queries))
    except ApiError as exc:
        log(f"relevance: the API failed: {exc}")
        return 1
    api_done = time.perf_counter()
    log(f"api: {len(outcomes)} queries in {api_done - api_started:.0f} s")
    try:
        run_baselines(url, outcomes)
    except (psycopg.Error, RuntimeError) as exc:
        log(f"relevance: the baselines failed: {exc}")
        return 2
    log(f"baselines: {time.perf_counter() - api_done:.0f} s")

    rows = table_rows(outcomes)
    table = markdown_table(rows)
    elapsed = time.perf_counter() - started
    output = args.output or RESULTS_DIR / f"relevance-{dt.date.today().isoformat()}.md"
    by_id = {p.id: p for p in patients}
    write_report(
        output, table, misses_markdown(outcomes, by_id), args, elapsed, _server_version(url)
    )
    if args.json:
        write_json(args.json, rows, outcomes)
    print(table)
    log(f"relevance: wrote {output} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
