"""Normalisation of phones and emails, shared by the API, the importer and search."""

from __future__ import annotations

import re

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15


_NON_DIGITS = re.compile(r"\D+")
_LETTERS = re.compile(r"[^\W\d_]")
_NANP_SHAPE = re.compile(r"^[0-9+(). -]+$")


def phone_digits(raw: str) -> str:
    """The digits of a phone number as typed, punctuation dropped."""
    return _NON_DIGITS.sub("", raw)


def is_plausible_phone(raw: str) -> bool:
    """7–15 digits and no letters: what a person could have dialled."""
    if _LETTERS.search(raw):
        return False
    return MIN_PHONE_DIGITS <= len(phone_digits(raw)) <= MAX_PHONE_DIGITS


_NANP_REGIONS = frozenset({"US", "CA"})


def _nanp_fast_path(raw: str) -> str | None:
    # Bulk imports normalise millions of phones and phonenumbers.parse costs ~25 µs each.
    # A plainly punctuated 10-digit NANP number (optionally with the country code 1) has
    # one answer, identical to phonenumbers' (tested); anything else takes the full parser.
    if not _NANP_SHAPE.match(raw):
        return None
    if "+" in raw and not raw.lstrip().startswith("+1"):
        return None
    digits = phone_digits(raw)
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789":
        return "+1" + digits
    return None


def normalize_phone(raw: str, region: str) -> str | None:
    """E.164 form of a phone number, or None when it does not parse as a possible number."""
    if region in _NANP_REGIONS and (fast := _nanp_fast_path(raw)) is not None:
        return fast
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    # A local-only number (7 digits in the US) has no E.164 form: keep just the raw text.
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def is_valid_email(raw: str) -> bool:
    """A deliberately loose shape check: one @, a dotted domain, no spaces."""
    return len(raw) <= 254 and _EMAIL.match(raw) is not None


def normalize_email(raw: str) -> str:
    """Lower-cased email; families share addresses, so this is a search key, not an identity."""
    return raw.strip().lower()


def postal_code_key(value: str) -> str:
    """A postal code as compared: letters and digits only, upper-cased ("sw1a 1aa" → "SW1A1AA").

    Must agree with the generated column `patients.postal_code_key`."""
    return "".join(ch for ch in value if ch.isalnum()).upper()
