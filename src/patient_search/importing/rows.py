"""Reading import files into numbered raw records, and validating each into a clean row."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from patient_search.contacts import normalize_email, normalize_phone
from patient_search.patients.schemas import PatientFields
from patient_search.search.indexing import NameIndex, name_index

FIELDS = (
    "mrn",
    "last_name",
    "first_name",
    "middle_name",
    "date_of_birth",
    "sex",
    "status",
    "phone",
    "email",
)
# A CSV file spreads the address over columns; a JSONL record has one `address` object.
CSV_ADDRESS_FIELDS = ("address_line1", "address_line2", "city", "state", "postal_code", "country")
CSV_FIELDS = FIELDS + CSV_ADDRESS_FIELDS
JSONL_FIELDS = (*FIELDS, "address")
REQUIRED_FIELDS = ("mrn", "last_name")
# Bytes that were not UTF-8 survive decoding as lone surrogates (errors="surrogateescape").
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_SEX_CODES = {"f": "female", "m": "male", "o": "other", "u": "unknown", "x": "other"}


class UnusableFile(Exception):
    """The file cannot be imported at all (missing, wrong type, bad header)."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as found in the file, with the line it starts on (the header is line 1)."""

    line: int
    fields: dict[str, Any] | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ImportRow:
    """A validated, normalised patient ready for COPY."""

    line: int
    mrn: str
    first_name: str | None
    middle_name: str | None
    last_name: str
    date_of_birth: dt.date | None
    sex: str | None
    status: str
    email: str | None
    email_normalized: str | None
    phones_raw: list[str]
    phones_e164: list[str | None]
    names: NameIndex
    address: str | None = None  # the stored JSON, as text for COPY


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was not loaded, and why (never quoting its values)."""

    line: int
    reason: str


def read_records(path: Path) -> Iterator[RawRecord]:
    """The records of a `.csv` or `.jsonl` file; UnusableFile when it cannot be read at all."""
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".jsonl"}:
        raise UnusableFile(f"{path.name}: expected a .csv or .jsonl file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UnusableFile(f"{path}: {exc.strerror}") from exc
    if handle.peek(4)[:4].startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        handle.close()
        # Else every byte pair reads as garbage and the header "lacks mrn", which misleads.
        raise UnusableFile(f"{path.name}: the file is UTF-16 or UTF-32; save it as UTF-8")
    # surrogateescape keeps undecodable bytes visible so their record is rejected, not the file.
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
    with text:
        if suffix == ".csv":
            yield from _csv_records(text)
        else:
            yield from _jsonl_records(text)


class _Lines:
    """The file's lines for csv.reader, remembering those of the current record; lines can be
    put back, to be read again."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._source = iter(text)
        self._again: deque[str] = deque()
        self.record: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._again.popleft() if self._again else next(self._source)
        self.record.append(line)
        return line

    def put_back(self, lines: list[str]) -> None:
        self._again.extendleft(reversed(lines))


def _csv_records(text: io.TextIOWrapper) -> Iterator[RawRecord]:
    lines = _Lines(text)
    reader = csv.reader(lines, strict=True)
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise UnusableFile("the file is empty; expected a header row") from None
    except csv.Error as exc:
        raise UnusableFile(f"the header row is not valid CSV ({exc})") from None
    _check_header(header)
    line = len(lines.record) + 1
    while True:
        lines.record = []
        problem = None
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = f"not valid CSV ({exc})"
        else:
            if not values or values == [""]:
                line += len(lines.record)
                continue
            if len(values) != len(header):
                problem = f"has {len(values)} fields, the header has {len(header)}"
        if problem is None:
            yield RawRecord(line, dict(zip(header, values, strict=True)))
            line += len(lines.record)
            continue
        yield RawRecord(line, None, problem)
        # A stray quote makes one "record" of the lines up to the next quote (or the end of the
        # file): read those again, one by one, so that the good rows among them still load.
        lines.put_back(lines.record[1:])
        line += 1


def _jsonl_records(text: io.TextIOWrapper) -> Iterator[RawRecord]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line.encode("utf-8", "surrogateescape"))
        except orjson.JSONDecodeError:
            yield RawRecord(number, None, "not a valid JSON object")
            continue
        if not isinstance(value, dict):
            yield RawRecord(number, None, "not a JSON object")
            continue
        unknown = sorted(set(value) - set(JSONL_FIELDS))
        if unknown:
            yield RawRecord(number, None, f"unknown fields: {', '.join(unknown)}")
            continue
        yield RawRecord(number, value)


def _check_header(header: list[str]) -> None:
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise UnusableFile(f"the header lacks the required column(s): {', '.join(missing)}")
    unknown = sorted(set(header) - set(CSV_FIELDS))
    if unknown:
        raise UnusableFile(f"the header has unknown column(s): {', '.join(unknown)}")
    if len(set(header)) != len(header):
        raise UnusableFile("the header names a column twice")


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _phones(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return [value]


def validate_record(record: RawRecord, region: str) -> ImportRow | Rejection:
    """The record as a clean row, or the reason it cannot be loaded."""
    if record.fields is None:
        return Rejection(record.line, record.problem or "unreadable")
    fields = {name: _blank_to_none(record.fields.get(name)) for name in CSV_FIELDS}
    for name, value in fields.items():
        if isinstance(value, str) and _UNDECODABLE.search(value):
            return Rejection(record.line, f"{name}: not valid UTF-8")
    address = record.fields.get("address")
    if address is None and any(fields[name] is not None for name in CSV_ADDRESS_FIELDS):
        lines = [fields["address_line1"], fields["address_line2"]]
        address = {
            "lines": [line for line in lines if line is not None],
            **{name: fields[name] for name in ("city", "state", "postal_code", "country")},
        }
    sex = fields["sex"]
    if isinstance(sex, str):
        sex = _SEX_CODES.get(sex.strip().lower(), sex.strip().lower())
    status = fields["status"]
    candidate = {
        "mrn": fields["mrn"],
        "last_name": fields["last_name"],
        "first_name": fields["first_name"],
        "middle_name": fields["middle_name"],
        "date_of_birth": fields["date_of_birth"],
        "sex": sex,
        "status": status.strip().lower() if isinstance(status, str) else (status or "active"),
        "phones": _phones(fields["phone"]),
        "email": fields["email"],
        "address": address,
    }
    try:
        patient = PatientFields.model_validate(candidate)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return Rejection(record.line, f"{where}: {first['msg']}")
    return ImportRow(
        line=record.line,
        mrn=patient.mrn,
        first_name=patient.first_name,
        middle_name=patient.middle_name,
        last_name=patient.last_name,
        date_of_birth=patient.date_of_birth,
        sex=patient.sex,
        status=patient.status,
        email=patient.email,
        email_normalized=normalize_email(patient.email) if patient.email else None,
        phones_raw=patient.phones,
        phones_e164=[normalize_phone(p, region) for p in patient.phones],
        names=name_index(patient.first_name, patient.middle_name, patient.last_name),
        address=(
            orjson.dumps(patient.address.model_dump(exclude_none=True)).decode()
            if patient.address is not None and not patient.address.is_empty()
            else None
        ),
    )
