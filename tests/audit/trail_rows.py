"""Reading `access_audit` back in tests, as the superuser (no row-level security)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

Entries = list[tuple[str, str, str | None]]


def entries(conn: psycopg.Connection[Any], clinic: str, patient_id: object) -> Entries:
    """(action, actor, request id) of one patient's entries, in access order."""
    rows = conn.execute(
        "SELECT action, actor, request_id FROM access_audit"
        " WHERE clinic_id = %s AND patient_id = %s ORDER BY at, id",
        [clinic, uuid.UUID(str(patient_id))],
    ).fetchall()
    return [(action, actor, request_id) for action, actor, request_id in rows]


def with_request_id(value: str) -> dict[str, str]:
    return {"X-Request-ID": value}
