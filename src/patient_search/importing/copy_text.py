"""Rows in PostgreSQL's COPY text format, built where they are validated.

A worker process validates a batch and hands back one text line per row: plain strings cross
the process boundary cheaply, where pickled row objects cost more than the validation itself
(measured: ~40 µs a row for frozen dataclasses against ~2 µs for strings).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"

CopyValue = str | int | dt.date | uuid.UUID | list[str] | list[str | None] | None


def _array(values: Iterable[str | None]) -> str:
    # An array literal's elements are double-quoted, with their own backslash escaping; the
    # whole literal is then escaped again as one COPY field.
    items = (
        "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values
    )
    return "{" + ",".join(items) + "}"


def field(value: CopyValue) -> str:
    """One value as a COPY text field."""
    if value is None:
        return NULL
    if isinstance(value, list):
        return _array(value).translate(_ESCAPES)
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def line(values: Iterable[CopyValue]) -> str:
    """A whole row: tab-separated fields and a newline."""
    return "\t".join(field(v) for v in values) + "\n"
