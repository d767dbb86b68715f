"""Fast, deterministic generator of realistic synthetic patients.

Faker is used only as a source of name lists: they are loaded once and sampled with a
private ``random.Random``, because calling Faker per row is far too slow for a
million-row seed and would tie the output to Faker's own seeding.

Only ``random.Random.random()`` is used for sampling (never ``choices``/``randrange``):
the random module documents that ``random()`` keeps producing the same sequence for the
same seed across Python versions, while its other algorithms may change.
"""

import dataclasses
import datetime
import heapq
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from random import Random
from typing import Any, Final, Generic, TypeVar

from patient_search.importing.rows import FIELDS

__all__ = [
    "IMPORT_FIELDS",
    "REFERENCE_DATE",
    "SyntheticPatient",
    "generate_patients",
]

# Column order of the import file; ``as_import_row`` returns exactly these keys.
IMPORT_FIELDS: Final = FIELDS

# Ages are computed against a fixed date rather than date.today() so that the same seed
# yields the same rows on any day; it is in the past, so no DOB is ever in the future.
REFERENCE_DATE: Final = datetime.date(2026, 1, 1)


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    """One generated patient, with values shaped the way front-desk staff type them."""

    mrn: str
    first_name: str
    middle_name: str | None
    last_name: str
    date_of_birth: datetime.date
    sex: str
    status: str
    phones: list[str]
    email: str | None

    def as_import_row(self) -> dict[str, str]:
        """Return the patient as an import-file row; missing values are empty strings."""
        return {
            "mrn": self.mrn,
            "last_name": self.last_name,
            "first_name": self.first_name,
            "middle_name": self.middle_name or "",
            "date_of_birth": self.date_of_birth.isoformat(),
            "sex": self.sex,
            "status": self.status,
            "phone": ";".join(self.phones),
            "email": self.email or "",
        }


# Everything of a patient except the MRN, which is assigned at emission time.
_Row = tuple[str, str | None, str, datetime.date, str, str, list[str], str | None]
_Person = tuple[str, str | None, str, datetime.date, str, str]
_Phone = tuple[str, str, str]  # area code, exchange, line number

_T = TypeVar("_T")
_RESOLUTION: Final = 1 << 15  # table slots per weighted pool: ~0.003 % granularity


class _Pool(Generic[_T]):
    """Weighted choice by table lookup: each value fills slots in proportion to its weight.

    ``table[int(random() * size)]`` is several times faster than bisecting cumulative
    weights, which matters at ~25 draws per patient on a slow CPU.
    """

    __slots__ = ("size", "table")

    def __init__(self, pairs: Iterable[tuple[_T, float]]) -> None:
        items = [(value, weight) for value, weight in pairs if weight > 0]
        if not items:
            raise ValueError("empty pool")
        if len({weight for _, weight in items}) == 1:
            table = tuple(value for value, _ in items)
        else:
            total = sum(weight for _, weight in items)
            # Every value keeps at least one slot, so rare names still occur.
            table = tuple(
                value
                for value, weight in items
                for _ in range(max(1, round(weight / total * _RESOLUTION)))
            )
        self.table: tuple[_T, ...] = table
        self.size: int = len(table)

    def pick(self, u: float) -> _T:
        """Return the value selected by ``u`` in [0, 1)."""
        return self.table[int(u * self.size)]


@dataclass(frozen=True, slots=True)
class _Culture:
    """Name sources and naming habits of one population group."""

    female: _Pool[str]
    male: _Pool[str]
    last_female: _Pool[str]
    last_male: _Pool[str]
    middle_female: _Pool[str]
    middle_male: _Pool[str]
    hyphen_rate: float  # "García-López"
    spaced_double_rate: float  # "García López" (two surnames, no hyphen)
    anglo_first_rate: float  # US-born children often get an English first name
    unaccented_rate: float  # registration staff frequently drop diacritics
    middle_rate: float
    extra_last: _Pool[str] | None = None  # extra surnames mixed in at extra_last_rate
    extra_last_rate: float = 0.0


# --------------------------------------------------------------------------- name lists

_PARTICLES: Final = frozenset(
    {"da", "das", "de", "del", "della", "den", "der", "di", "do", "dos", "du", "la", "le"}
    | {"les", "los", "las", "st.", "ten", "ter", "van", "von", "y", "zu"}
)
_WORD: Final = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*")
_FIRST: Final = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+){0,2}")
# Typos in Faker's lists that no real registration would contain.
_FIXUPS: Final = {
    "de la Crúz": "de la Cruz",
    "Hernádez": "Hernández",
    "Rodrígez": "Rodríguez",
    "Rodríquez": "Rodríguez",
}

# US surnames with particles or apostrophes; Faker's en_US list has only run-together
# forms ("Delacruz", "Obrien") or none at all.
_US_COMPOUND_SURNAMES: Final = (
    "De La Cruz",
    "de la Cruz",
    "De Jesus",
    "Del Rosario",
    "De Leon",
    "De La Rosa",
    "De Los Santos",
    "Van der Berg",
    "Van Dyke",
    "Van Buren",
    "Van Horn",
    "Le Blanc",
    "La Rosa",
    "Du Bois",
    "St. John",
    "O'Brien",
    "O'Connor",
    "O'Neill",
    "O'Sullivan",
    "D'Angelo",
    "D'Souza",
    "Da Silva",
    "Dos Santos",
    "Van Der Meer",
)


def _provider(locale: str) -> Any:
    """Return Faker's person Provider class for ``locale`` (imported lazily)."""
    return import_module(f"faker.providers.person.{locale}").Provider


def _weighted(obj: object, *, ranked: bool = False) -> list[tuple[str, float]]:
    """Turn a Faker name list (weighted dict or plain sequence) into (name, weight) pairs."""
    if isinstance(obj, Mapping):
        return [(str(k), float(v)) for k, v in obj.items()]
    if not isinstance(obj, list | tuple):
        raise TypeError(f"unexpected Faker name list type {type(obj)!r}")
    if ranked:
        # The list is ordered by frequency but carries no weights: apply a Zipf-like
        # decay so "Martin"/"Kowalski" are common and the tail is rare.
        return [(str(n), 1.0 / (i + 10)) for i, n in enumerate(obj)]
    return [(str(n), 1.0) for n in obj]


def _clean_first(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Keep plausible given names (letters with at most two inner separators)."""
    out = []
    for raw, weight in pairs:
        name = " ".join(raw.split())
        if _FIRST.fullmatch(name):
            out.append((name, weight))
    return out


def _clean_last(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Keep surnames that are one word, optionally after particles ("van der Berg")."""
    out = []
    for raw, weight in pairs:
        name = _FIXUPS.get(raw, " ".join(raw.split()))
        *particles, core = name.split(" ")
        # Faker's de_DE/nl_NL lists hold noble titles and inverted forms ("Dussen van",
        # "Heribert van Laon"); accepting only particles + one capitalised word drops them.
        if len(particles) > 2 or not _WORD.fullmatch(core) or not core[0].isupper():
            continue
        if all(p.lower() in _PARTICLES for p in particles):
            if core.startswith("Mc") and len(core) > 2:
                core = "Mc" + core[2].upper() + core[3:]  # Faker spells "Mcdonald"
            out.append((" ".join([*particles, core]), weight))
    return out


def _title(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Title-case romanised names that Faker stores in capitals ("CHIA-HAO")."""
    return [(n.title(), w) for n, w in pairs]


def _polish_feminine(name: str) -> str:
    """Return the feminine form of a Polish adjectival surname (Kowalski -> Kowalska)."""
    return name[:-1] + "a" if name.endswith(("ski", "cki", "dzki")) else name


def _scaled(pairs: list[tuple[str, float]], mass: float) -> list[tuple[str, float]]:
    """Rescale weights so the list carries ``mass`` in total (to blend two lists)."""
    total = sum(w for _, w in pairs)
    return [(n, w * mass / total) for n, w in pairs]


def _culture(
    locale: str,
    *,
    hyphen_rate: float,
    anglo_first_rate: float,
    unaccented_rate: float,
    middle_rate: float = 0.4,
    spaced_double_rate: float = 0.0,
    ranked_last: bool = False,
) -> _Culture:
    """Build a culture from one Faker locale's plain first/last name lists."""
    p = _provider(locale)
    female = _Pool(_clean_first(_weighted(p.first_names_female)))
    male = _Pool(_clean_first(_weighted(p.first_names_male)))
    last = _Pool(_clean_last(_weighted(p.last_names, ranked=ranked_last)))
    return _Culture(
        female=female,
        male=male,
        last_female=last,
        last_male=last,
        middle_female=female,
        middle_male=male,
        hyphen_rate=hyphen_rate,
        spaced_double_rate=spaced_double_rate,
        anglo_first_rate=anglo_first_rate,
        unaccented_rate=unaccented_rate,
        middle_rate=middle_rate,
    )


@dataclass(frozen=True, slots=True)
class _Tables:
    """All lookup tables, built once per process."""

    cultures: _Pool[_Culture]
    us: _Culture


@cache
def _tables() -> _Tables:
    """Load Faker's name lists once and precompute every weighted pool."""
    us_p = _provider("en_US")
    us_female = _Pool(_clean_first(_weighted(us_p.first_names_female)))
    us_male = _Pool(_clean_first(_weighted(us_p.first_names_male)))
    us_last = _Pool(_clean_last(_weighted(us_p.last_names)))
    us = _Culture(
        female=us_female,
        male=us_male,
        last_female=us_last,
        last_male=us_last,
        middle_female=us_female,
        middle_male=us_male,
        hyphen_rate=0.025,
        spaced_double_rate=0.0,
        anglo_first_rate=0.0,
        unaccented_rate=0.0,
        middle_rate=0.42,
        extra_last=_Pool((n, 1.0) for n in _US_COMPOUND_SURNAMES),
        extra_last_rate=0.013,
    )

    pl = _provider("pl_PL")
    pl_female = _Pool(_clean_first(_weighted(pl.first_names_female)))
    pl_male = _Pool(_clean_first(_weighted(pl.first_names_male)))
    # pl_PL.last_names is a placeholder; real data is a ranked masculine list plus a
    # unisex list, and women carry the feminine form of adjectival surnames.
    pl_ranked = _scaled(_weighted(pl.male_last_names, ranked=True), 0.6)
    pl_unisex = _scaled(_weighted(pl.unisex_last_names), 0.4)
    polish = _Culture(
        female=pl_female,
        male=pl_male,
        last_female=_Pool(
            _clean_last([(_polish_feminine(n), w) for n, w in pl_ranked]) + _clean_last(pl_unisex)
        ),
        last_male=_Pool(_clean_last(pl_ranked + pl_unisex)),
        middle_female=pl_female,
        middle_male=pl_male,
        hyphen_rate=0.03,
        spaced_double_rate=0.0,
        anglo_first_rate=0.15,
        unaccented_rate=0.3,
        middle_rate=0.3,
    )

    vi = _provider("vi_VN")
    vi_female = _Pool(_clean_first(_weighted(vi.first_names_female)))
    vi_male = _Pool(_clean_first(_weighted(vi.first_names_male)))
    vi_middles = [(n, 1.0) for n in vi.middle_names if n not in ("Thị", "Văn")]
    vietnamese = _Culture(
        female=vi_female,
        male=vi_male,
        last_female=_Pool(_weighted(vi.last_names, ranked=True)),
        last_male=_Pool(_weighted(vi.last_names, ranked=True)),
        # "Thị" / "Văn" are the customary female / male middle names.
        middle_female=_Pool([("Thị", 20.0), *vi_middles]),
        middle_male=_Pool([("Văn", 12.0), *vi_middles]),
        hyphen_rate=0.0,
        spaced_double_rate=0.0,
        anglo_first_rate=0.4,
        unaccented_rate=0.6,
        middle_rate=0.6,
    )

    tw = _provider("zh_TW")
    tw_female = _Pool(_title(_weighted(tw.first_romanized_names_female)))
    tw_male = _Pool(_title(_weighted(tw.first_romanized_names_male)))
    # zh_TW's romanised surname weights put ~24 % on "Chen"; blending in the mainland
    # pinyin list (unweighted) gives a realistic mix of Chen/Lin and Wang/Li/Zhang.
    cn_last = _Pool(
        _scaled(_title(_weighted(tw.last_romanized_names)), 0.5)
        + _scaled(_weighted(_provider("zh_CN").last_romanized_names), 0.5)
    )
    chinese = _Culture(
        female=tw_female,
        male=tw_male,
        last_female=cn_last,
        last_male=cn_last,
        middle_female=us_female,
        middle_male=us_male,
        hyphen_rate=0.005,
        spaced_double_rate=0.0,
        anglo_first_rate=0.45,
        unaccented_rate=0.0,
        middle_rate=0.2,
    )

    jp = _provider("ja_JP")
    jp_female = _Pool(_weighted(jp.first_romanized_names_female))
    jp_male = _Pool(_weighted(jp.first_romanized_names_male))
    japanese = _Culture(
        female=jp_female,
        male=jp_male,
        last_female=_Pool(_weighted(jp.last_romanized_names, ranked=True)),
        last_male=_Pool(_weighted(jp.last_romanized_names, ranked=True)),
        middle_female=us_female,
        middle_male=us_male,
        hyphen_rate=0.005,
        spaced_double_rate=0.0,
        anglo_first_rate=0.3,
        unaccented_rate=0.0,
        middle_rate=0.15,
    )

    # (culture, share of patients): mostly en_US, then Hispanic, European, Asian.
    weighted_cultures: list[tuple[_Culture, float]] = [
        (us, 0.650),
        (
            _culture(
                "es_MX",
                hyphen_rate=0.12,
                spaced_double_rate=0.05,
                anglo_first_rate=0.25,
                unaccented_rate=0.35,
                middle_rate=0.45,
            ),
            0.125,
        ),
        (
            _culture(
                "es_ES",
                hyphen_rate=0.15,
                spaced_double_rate=0.05,
                anglo_first_rate=0.1,
                unaccented_rate=0.3,
                middle_rate=0.4,
            ),
            0.030,
        ),
        (
            _culture(
                "pt_BR",
                hyphen_rate=0.06,
                spaced_double_rate=0.03,
                anglo_first_rate=0.15,
                unaccented_rate=0.3,
                middle_rate=0.4,
            ),
            0.020,
        ),
        (
            _culture(
                "fr_FR",
                hyphen_rate=0.04,
                anglo_first_rate=0.15,
                unaccented_rate=0.25,
                ranked_last=True,
            ),
            0.015,
        ),
        (_culture("de_DE", hyphen_rate=0.04, anglo_first_rate=0.15, unaccented_rate=0.25), 0.020),
        (_culture("it_IT", hyphen_rate=0.02, anglo_first_rate=0.2, unaccented_rate=0.25), 0.020),
        (polish, 0.015),
        (_culture("nl_NL", hyphen_rate=0.02, anglo_first_rate=0.2, unaccented_rate=0.25), 0.005),
        (_culture("en_IE", hyphen_rate=0.02, anglo_first_rate=0.3, unaccented_rate=0.2), 0.015),
        (vietnamese, 0.020),
        (chinese, 0.020),
        (japanese, 0.010),
        (
            _culture(
                "en_IN",
                hyphen_rate=0.005,
                anglo_first_rate=0.05,
                unaccented_rate=0.0,
                middle_rate=0.25,
            ),
            0.035,
        ),
    ]
    return _Tables(cultures=_Pool(weighted_cultures), us=us)


# --------------------------------------------------------------------------- other tables

# Age pyramid of a primary-care panel: adults and older adults over-represented.
_AGE_BANDS: Final = (
    (0, 17, 1.0),
    (18, 29, 1.05),
    (30, 44, 1.2),
    (45, 64, 1.35),
    (65, 74, 1.3),
    (75, 84, 0.9),
    (85, 94, 0.35),
    (95, 100, 0.06),
)
_AGES: Final = _Pool((age, w) for lo, hi, w in _AGE_BANDS for age in range(lo, hi + 1))

# Deceased records skew old; these per-age rates average ~2 % over the age pyramid.
_DECEASED_BY_AGE: Final = tuple(
    0.002 if a < 40 else 0.01 if a < 65 else 0.04 if a < 80 else 0.12 for a in range(101)
)
_INACTIVE_RATE: Final = 0.08 / 0.98  # ~8 % of all patients once deceased are set aside

# Phones come mostly from the practice's own metro area (Boston), the rest from anywhere.
_LOCAL_AREA_CODES: Final = (617, 857, 781, 339, 508, 774, 978, 351)
_OTHER_AREA_CODES: Final = (
    201, 202, 203, 206, 212, 213, 214, 215, 267, 301, 303, 305, 310, 312, 313, 314, 347,
    401, 404, 407, 408, 410, 412, 415, 503, 504, 510, 512, 602, 603, 610, 612, 619, 646,
    650, 702, 704, 713, 718, 720, 773, 786, 802, 813, 818, 860, 904, 917, 919, 954, 973,
)  # fmt: skip
_AREA_CODES: Final = _Pool(
    [(str(ac), 0.65 / len(_LOCAL_AREA_CODES)) for ac in _LOCAL_AREA_CODES]
    + [(str(ac), 0.35 / len(_OTHER_AREA_CODES)) for ac in _OTHER_AREA_CODES]
)
# NANP exchanges: 200-999, never N11 (service codes); 555 skipped to avoid fictional numbers.
_EXCHANGES: Final = _Pool((str(e), 1.0) for e in range(200, 1000) if e % 100 != 11 and e != 555)
_LINES: Final = tuple(f"{n:04d}" for n in range(10000))

# How people type a phone number: (prefix, after area code, after exchange) by frequency.
_PHONE_FORMATS: Final = _Pool(
    [
        (("(", ") ", "-"), 30.0),  # (617) 555-0134
        (("", "-", "-"), 28.0),  # 617-555-0134
        (("", "", ""), 14.0),  # 6175550134
        (("", ".", "."), 7.0),  # 617.555.0134
        (("+1 ", " ", " "), 6.0),  # +1 617 555 0134
        (("1-", "-", "-"), 5.0),  # 1-617-555-0134
        (("+1", "", ""), 3.0),  # +16175550134
        (("(", ")", "-"), 3.0),  # (617)555-0134
        (("", " ", " "), 2.0),  # 617 555 0134
        (("+1 (", ") ", "-"), 2.0),  # +1 (617) 555-0134
    ]
)
_PHONE_COUNTS: Final = _Pool([(0, 6.0), (1, 50.0), (2, 32.0), (3, 12.0)])

# Only reserved example domains (RFC 2606 / 6761), never real ones.
_EMAIL_DOMAINS: Final = _Pool(
    [("example.com", 50.0), ("example.org", 20.0), ("example.net", 20.0), ("mail.example", 10.0)]
)
# ~15 % of patients end up without an email: young children mostly use a parent's
# address or none, adults occasionally give none.
_NO_EMAIL_RATE: Final = 0.10
_CHILD_AGE: Final = 13
_CHILD_PARENT_EMAIL_RATE: Final = 0.5

# Unit mix; tuned so ~0.5 % of patients are twins and ~10 % share an email.
_TWIN_RATE: Final = 0.0026
_FAMILY_RATE: Final = 0.040
# Family members are registered at different times, so their rows are scattered over
# the next few thousand MRNs instead of sitting next to each other.
_FAMILY_SPREAD: Final = 5000
_MOBILE_AGE: Final = 14  # from about this age people give their own mobile number
_SEXES: Final = _Pool([("female", 51.5), ("male", 47.5), ("other", 0.5), ("unknown", 0.5)])

# Characters NFKD does not decompose into base letter + combining mark.
_ASCII_FIXES: Final = str.maketrans(
    {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ø": "O", "ø": "o", "ß": "ss", "Æ": "AE",
     "æ": "ae", "Œ": "OE", "œ": "oe", "ı": "i"}
)  # fmt: skip
_NON_ALNUM: Final = re.compile(r"[^A-Za-z0-9]+")
_EMAIL_BITS: Final = 1 << 25  # 4 MiB bitmap; ~3 % false positives at a million emails
_from_ordinal: Final = datetime.date.fromordinal


def _strip_accents(text: str) -> str:
    """Return ``text`` without diacritics (José Núñez -> Jose Nunez, Łukasz -> Lukasz)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FIXES))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# --------------------------------------------------------------------------- generator


# The frozen dataclass __init__ routes every field through object.__setattr__; writing the
# slots through their descriptors directly is about twice as fast (~1 s per million rows).
_new_object: Final = object.__new__
(
    _set_mrn,
    _set_first_name,
    _set_middle_name,
    _set_last_name,
    _set_date_of_birth,
    _set_sex,
    _set_status,
    _set_phones,
    _set_email,
) = (getattr(SyntheticPatient, f.name).__set__ for f in dataclasses.fields(SyntheticPatient))


def _new_patient(mrn: str, row: _Row) -> SyntheticPatient:
    """Build a patient from an MRN and a row, bypassing the slow frozen ``__init__``."""
    first, middle, last, dob, sex, status, phones, email = row
    p: SyntheticPatient = _new_object(SyntheticPatient)
    _set_mrn(p, mrn)
    _set_first_name(p, first)
    _set_middle_name(p, middle)
    _set_last_name(p, last)
    _set_date_of_birth(p, dob)
    _set_sex(p, sex)
    _set_status(p, status)
    _set_phones(p, phones)
    _set_email(p, email)
    return p


class _Builder:
    """Row factory holding the RNG and caches of one ``generate_patients`` call."""

    def __init__(self, seed: int, as_of: datetime.date) -> None:
        tables = _tables()
        self.cultures = tables.cultures
        self.us = tables.us
        self.random = Random(seed).random
        self.as_of_ord = as_of.toordinal()
        try:
            oldest = as_of.replace(year=as_of.year - 101)
        except ValueError:  # as_of is Feb 29
            oldest = as_of.replace(year=as_of.year - 101, day=28)
        # Keep every DOB after the 101st-birthday cutoff, i.e. age <= 100.
        self.max_days_back = self.as_of_ord - oldest.toordinal() - 1
        self.plain_cache: dict[str, str] = {}
        self.part_cache: dict[str, str] = {}
        self.last_part_cache: dict[str, str] = {}
        # Bitmap of hashed addresses already handed out, so unrelated patients never share
        # an email by accident, in constant memory; a false positive only adds digits.
        self.email_bits = bytearray(_EMAIL_BITS >> 3)
        self.email_serial = 0

    # ----------------------------------------------------------------- people

    def person(self, c: _Culture, sex: str, age: int, last: str | None = None) -> _Person:
        """Draw the names, DOB and status of one person; callers add contact data."""
        random = self.random
        female = sex == "female" or (sex != "male" and random() < 0.5)
        src = self.us if c.anglo_first_rate and random() < c.anglo_first_rate else c
        pool = src.female if female else src.male
        first = pool.table[int(random() * pool.size)]

        middle: str | None = None
        if random() < c.middle_rate:
            pool = c.middle_female if female else c.middle_male
            middle = pool.table[int(random() * pool.size)]
            if middle == first:
                middle = pool.table[int(random() * pool.size)]
            u = random()
            if u < 0.25:  # typed as an initial, sometimes with a period
                middle = middle[0] if u < 0.18 else middle[0] + "."
        if last is None:
            last = self.last_name(c, female)
        if c.unaccented_rate and random() < c.unaccented_rate:
            # The clerk typed the whole record without diacritics (José Núñez -> Jose Nunez).
            first = self.plain(first)
            last = self.plain(last)
            if middle is not None:
                middle = self.plain(middle)

        days_back = int((age + random()) * 365.2425)
        dob = _from_ordinal(self.as_of_ord - min(days_back, self.max_days_back))
        if random() < _DECEASED_BY_AGE[age]:
            status = "deceased"
        elif random() < _INACTIVE_RATE:
            status = "inactive"
        else:
            status = "active"
        return first, middle, last, dob, sex, status

    def last_name(self, c: _Culture, female: bool) -> str:
        """Draw a surname, sometimes double-barrelled with a hyphen or a space."""
        random = self.random
        if c.extra_last is not None and random() < c.extra_last_rate:
            return c.extra_last.pick(random())
        pool = c.last_female if female else c.last_male
        last = pool.table[int(random() * pool.size)]
        u = random()
        if u < c.hyphen_rate + c.spaced_double_rate and " " not in last:
            second = pool.table[int(random() * pool.size)]
            if second != last and " " not in second:
                return f"{last}-{second}" if u < c.hyphen_rate else f"{last} {second}"
        return last

    def plain(self, name: str) -> str:
        """Return ``name`` without diacritics (cached: names repeat a lot)."""
        plain = self.plain_cache.get(name)
        if plain is None:
            plain = self.plain_cache[name] = _strip_accents(name)
        return plain

    def culture(self) -> _Culture:
        """Draw a population group."""
        return self.cultures.table[int(self.random() * self.cultures.size)]

    def sex(self) -> str:
        """Draw a sex (~1 % other/unknown)."""
        return _SEXES.table[int(self.random() * _SEXES.size)]

    def age(self) -> int:
        """Draw an age from the panel's age pyramid."""
        return _AGES.table[int(self.random() * _AGES.size)]

    # ----------------------------------------------------------------- phones

    def number(self) -> _Phone:
        """Draw a valid US number as (area code, exchange, line)."""
        random = self.random
        return (
            _AREA_CODES.table[int(random() * _AREA_CODES.size)],
            _EXCHANGES.table[int(random() * _EXCHANGES.size)],
            _LINES[int(random() * 10000)],
        )

    def typed_phone(self, number: _Phone) -> str:
        """Format a number the way a person might type it."""
        pre, after_area, after_exchange = _PHONE_FORMATS.table[
            int(self.random() * _PHONE_FORMATS.size)
        ]
        area, exchange, line = number
        return f"{pre}{area}{after_area}{exchange}{after_exchange}{line}"

    def typed_phones(self) -> list[str]:
        """Draw 0-3 distinct numbers for one person, each typed in some format."""
        # number() and typed_phone() inlined: this runs for every patient.
        random = self.random
        n = _PHONE_COUNTS.table[int(random() * _PHONE_COUNTS.size)]
        numbers: list[_Phone] = []
        phones: list[str] = []
        while len(numbers) < n:
            number = (
                _AREA_CODES.table[int(random() * _AREA_CODES.size)],
                _EXCHANGES.table[int(random() * _EXCHANGES.size)],
                _LINES[int(random() * 10000)],
            )
            if number in numbers:
                continue
            numbers.append(number)
            pre, after_area, after_exchange = _PHONE_FORMATS.table[
                int(random() * _PHONE_FORMATS.size)
            ]
            phones.append(f"{pre}{number[0]}{after_area}{number[1]}{after_exchange}{number[2]}")
        return phones

    # ----------------------------------------------------------------- emails

    def part(self, name: str) -> str:
        """Return the ASCII letters of a name's first word, case kept (Núñez -> Nunez)."""
        part = self.part_cache.get(name)
        if part is None:
            words = _NON_ALNUM.sub(" ", _strip_accents(name)).split()
            part = self.part_cache[name] = words[0] if words else ""
        return part

    def claim(self, local: str) -> str:
        """Apply how the address was typed, make it unique, and return it."""
        random = self.random
        domain = _EMAIL_DOMAINS.table[int(random() * _EMAIL_DOMAINS.size)]
        key = local.lower()
        bits = self.email_bits
        for digits in (0, 2, 3, 4):
            suffix = ""
            if digits:
                low = 10 ** (digits - 1)
                suffix = str(low + int(random() * 9 * low))
            h = zlib.crc32(f"{key}{suffix}@{domain}".encode()) & (_EMAIL_BITS - 1)
            idx, bit = h >> 3, 1 << (h & 7)
            if not bits[idx] & bit:
                bits[idx] |= bit
                break
        else:
            # Plus-addressing with a per-call serial is unique by construction: no other
            # generated address contains '+'.
            self.email_serial += 1
            suffix = f"+{self.email_serial}"
        u = random()
        # Mostly lower case; some Capitalised as the name is written, a few in CAPS.
        if u < 0.8:
            return f"{key}{suffix}@{domain}"
        if u < 0.96:
            return f"{local}{suffix}@{domain}"
        return f"{local.upper()}{suffix}@{domain}"

    def personal_email(self, first: str, middle: str | None, last: str, year: int) -> str:
        """Derive a personal address from a person's name."""
        random = self.random
        parts = self.part_cache
        f = parts.get(first) or self.part(first) or "pat"
        ln = self.last_part(last) or "x"
        u = random()
        nn = 10 + int(random() * 90)
        if u < 0.25:
            local = f"{f}.{ln}"
        elif u < 0.40:
            local = f"{f}{ln}"
        elif u < 0.52:
            local = f"{f[0]}{ln}"
        elif u < 0.57:
            local = f"{f}_{ln}"
        elif u < 0.67:
            local = f"{f}.{ln}{nn}"
        elif u < 0.77:
            local = f"{f}{ln}{year if random() < 0.5 else year % 100:02d}"
        elif u < 0.82:
            local = f"{f}{nn}{int(random() * 10)}"
        elif u < 0.87:
            local = f"{ln}.{f}"
        elif u < 0.92:
            local = f"{f[0]}.{ln}"
        elif u < 0.97:
            local = f"{f}{ln[0]}{nn}"
        elif middle:
            local = f"{f}{self.part(middle)[:1]}{ln}"
        else:
            local = f"{f}.{ln}.{nn}"
        return self.claim(local)

    def last_part(self, last: str) -> str:
        """Return a surname as one ASCII word for an address (de la Cruz -> delaCruz)."""
        part = self.last_part_cache.get(last)
        if part is None:
            part = self.last_part_cache[last] = _NON_ALNUM.sub("", _strip_accents(last))
        return part

    def household_email(self, first: str, last: str) -> str:
        """Derive a family address, or a parent's personal one."""
        f = self.part(first) or "home"
        ln = self.part(last.split(" ")[-1]) or "family"  # "García-López" -> "García"
        u = self.random()
        if u < 0.25:
            local = f"{ln}family"
        elif u < 0.45:
            local = f"the{ln}s"
        elif u < 0.55:
            local = f"{ln}{100 + int(self.random() * 9900)}"
        else:
            local = f"{f}.{ln}"
        return self.claim(local)

    def parent_email(self, c: _Culture, last: str) -> str:
        """An address a parent gave for a child registered alone."""
        pool = c.female if self.random() < 0.65 else c.male
        return self.household_email(pool.table[int(self.random() * pool.size)], last)

    # ----------------------------------------------------------------- units

    def single(self) -> _Row:
        """One unrelated patient."""
        random = self.random
        c = self.cultures.table[int(random() * self.cultures.size)]
        age = _AGES.table[int(random() * _AGES.size)]
        first, middle, last, dob, sex, status = self.person(
            c, _SEXES.table[int(random() * _SEXES.size)], age
        )
        phones = self.typed_phones()
        email: str | None = None
        if age < _CHILD_AGE:
            if random() < _CHILD_PARENT_EMAIL_RATE:
                email = self.parent_email(c, last)
        elif random() >= _NO_EMAIL_RATE:
            email = self.personal_email(first, middle, last, dob.year)
        return first, middle, last, dob, sex, status, phones, email

    def twins(self) -> list[_Row]:
        """Two twins: same surname, DOB, phones and email; different first names."""
        random = self.random
        c = self.culture()
        age = self.age()
        a = self.person(c, self.sex(), age)
        sex_b = a[4] if random() < 0.6 else self.sex()
        b = self.person(c, sex_b, age, last=a[2])
        for _ in range(10):
            if b[0] != a[0]:
                break
            b = self.person(c, sex_b, age, last=a[2])
        # Twins are usually registered by a parent, who always leaves a number.
        phones = self.typed_phones() or [self.typed_phone(self.number())]
        email = None
        if random() < 0.85:
            # Twin children use a parent's address; adult twins kept the family one.
            email = self.household_email(a[0], a[2])
        return [
            (a[0], a[1], a[2], a[3], a[4], a[5], phones, email),
            (b[0], b[1], a[2], a[3], b[4], b[5], list(phones), email),
        ]

    def family(self) -> list[_Row]:
        """A household of 2-5 sharing a home phone and, mostly, one email."""
        random = self.random
        c = self.culture()
        kind = random()
        p1_sex = "female" if random() < 0.6 else "male"
        if kind < 0.35:  # couple without children at home
            p1_age, n_kids, couple = 22 + int(random() * 60), 0, True
        elif kind < 0.75:  # couple with children
            p1_age, n_kids, couple = 24 + int(random() * 35), 1 + int(random() * 3), True
        else:  # single parent
            p1_age, n_kids, couple = 20 + int(random() * 38), 1 + int(random() * 3), False
        family_last = self.last_name(c, p1_sex == "female")

        members = [(p1_age, self.person(c, p1_sex, p1_age, last=family_last))]
        if couple:
            p2_sex = p1_sex if random() < 0.1 else ("male" if p1_sex == "female" else "female")
            p2_age = max(18, min(100, p1_age + int(random() * 13) - 6))
            # Most spouses share the surname; some keep their own.
            p2_last = family_last if random() < 0.75 else None
            members.append((p2_age, self.person(c, p2_sex, p2_age, last=p2_last)))
        lo = max(0, p1_age - 45)
        hi = max(lo, p1_age - 18)
        for _ in range(n_kids):
            kid_age = lo + int(random() * (hi - lo + 1))
            members.append((kid_age, self.person(c, self.sex(), kid_age, last=family_last)))

        home = self.number()
        email = self.household_email(members[0][1][0], family_last)
        # Who registered with the shared address; at least two do, and they come first so
        # that truncating the family (at the end of the run) keeps the sharing pair.
        shares = [True] + [random() < 0.8 for _ in members[1:]]
        if not any(shares[1:]):
            shares[1] = True
        rows: list[_Row] = []
        for i in sorted(range(len(members)), key=lambda i: not shares[i]):
            age, (first, middle, last, dob, sex, status) = members[i]
            # Different clerks typed the same home number differently.
            phones = [self.typed_phone(home)]
            if age >= _MOBILE_AGE and random() < 0.7:
                phones.append(self.typed_phone(self.number()))
            own_email: str | None = email
            if not shares[i]:
                own_email = None
                if random() < 0.5:
                    own_email = self.personal_email(first, middle, last, dob.year)
            rows.append((first, middle, last, dob, sex, status, phones, own_email))
        return rows

    # ----------------------------------------------------------------- driver

    def run(self, count: int, mrn_prefix: str) -> Iterator[SyntheticPatient]:
        """Yield ``count`` patients with sequential MRNs."""
        random = self.random
        patient = _new_patient
        single = self.single
        # Deferred family members: (due position, tie-breaker, row).
        pending: list[tuple[int, int, _Row]] = []
        tie = 0
        emitted = 0
        while emitted < count:
            room = count - emitted - len(pending)  # slots not yet promised to anyone
            if pending and (pending[0][0] <= emitted or room <= 0):
                row = heapq.heappop(pending)[2]
                emitted += 1
                yield patient(f"{mrn_prefix}{emitted:08d}", row)
                continue
            u = random()
            if u >= _TWIN_RATE + _FAMILY_RATE or room < 2:
                emitted += 1
                yield patient(f"{mrn_prefix}{emitted:08d}", single())
            elif u < _TWIN_RATE:
                # Twins are registered together, so they get consecutive MRNs.
                for row in self.twins():
                    emitted += 1
                    yield patient(f"{mrn_prefix}{emitted:08d}", row)
            else:
                rows = self.family()[:room]
                for row in rows[1:]:
                    tie += 1
                    due = emitted + 1 + int(random() * _FAMILY_SPREAD)
                    heapq.heappush(pending, (due, tie, row))
                emitted += 1
                yield patient(f"{mrn_prefix}{emitted:08d}", rows[0])


def generate_patients(
    count: int,
    *,
    seed: int = 0,
    mrn_prefix: str = "",
    as_of: datetime.date = REFERENCE_DATE,
) -> Iterator[SyntheticPatient]:
    """Yield ``count`` realistic synthetic patients, identical for identical arguments."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return _Builder(seed, as_of).run(count, mrn_prefix)
