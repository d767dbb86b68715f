"""The omnibox: one line of text split into identifiers (email, phone, date, MRN) and names."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from patient_search.contacts import (
    MIN_PHONE_DIGITS,
    is_valid_email,
    normalize_email,
    normalize_phone,
    phone_digits,
)
from patient_search.search.names import name_tokens

_EMAIL = re.compile(r"[^\s@,;]+@[^\s@,;]+")
_ISO_DATE = re.compile(r"(?<![\d/-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d/-])")
_US_DATE = re.compile(r"(?<![\d/-])(\d{1,2})/(\d{1,2})/(\d{4})(?![\d/-])")
# Seven or more digits with phone punctuation between them, optionally +country code.
_PHONE = re.compile(r"(?<![\w+-])\+?\(?\d(?:[\d\s().-]*\d)?")
MAX_TOKENS = 8


@dataclass(slots=True)
class ParsedQuery:
    """What the omnibox text asks for."""

    names: list[str] = field(default_factory=list)
    comma_last: list[str] = field(default_factory=list)  # tokens before a comma: the last name
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)  # E.164
    dates: list[dt.date] = field(default_factory=list)
    mrns: list[str] = field(default_factory=list)
    invalid_dates: int = 0


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_query(text: str, region: str) -> ParsedQuery:
    """Split free text into identifiers and folded name tokens; identifiers are never fuzzed."""
    parsed = ParsedQuery()
    # Any typed token may be an MRN, whatever else it looks like; MRNs are looked up exactly.
    originals = [token.strip(",;") for token in text.split()]
    parsed.mrns = sorted({t for t in originals if t} | {t.upper() for t in originals if t})
    parsed.mrns = parsed.mrns[: MAX_TOKENS * 2]
    rest = text

    def take(pattern: re.Pattern[str], handle: object) -> None:
        nonlocal rest
        pieces: list[str] = []
        last = 0
        for found in pattern.finditer(rest):
            if handle(found):  # type: ignore[operator]
                pieces.append(rest[last : found.start()])
                pieces.append(" ")
                last = found.end()
        pieces.append(rest[last:])
        rest = "".join(pieces)

    def email(found: re.Match[str]) -> bool:
        value = found.group(0).strip(".")
        if is_valid_email(value):
            parsed.emails.append(normalize_email(value))
            return True
        return False

    def iso_date(found: re.Match[str]) -> bool:
        value = _date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        if value is None:
            parsed.invalid_dates += 1
        else:
            parsed.dates.append(value)
        return True

    def us_date(found: re.Match[str]) -> bool:
        value = _date(int(found.group(3)), int(found.group(1)), int(found.group(2)))
        if value is None:
            parsed.invalid_dates += 1
        else:
            parsed.dates.append(value)
        return True

    def phone(found: re.Match[str]) -> bool:
        raw = found.group(0).strip()
        if len(phone_digits(raw)) < MIN_PHONE_DIGITS:
            return False
        e164 = normalize_phone(raw, region)
        if e164 is not None:
            parsed.phones.append(e164)
        return True

    take(_EMAIL, email)
    take(_ISO_DATE, iso_date)
    take(_US_DATE, us_date)
    take(_PHONE, phone)

    # A typed word with a digit in it is an identifier (an MRN, part of a phone), never a
    # name to fuzz: "A-103" must not search for patients named "A".
    words = " ".join(word for word in rest.split() if not _has_digit(word))
    before_comma, comma, _after = words.partition(",")
    if comma:
        parsed.comma_last = name_tokens(before_comma)
    parsed.names = name_tokens(words)[:MAX_TOKENS]
    return parsed


def _has_digit(token: str) -> bool:
    return any(ch.isdigit() for ch in token)
