"""SQL for the append-only access audit (`access_audit`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from patient_search.db.statements import Row, Statement, StatementRunner

Action = Literal["view", "summary", "create", "update", "archive", "create_duplicate"]

RECORD = Statement(
    "audit.record",
    """
    INSERT INTO access_audit (clinic_id, patient_id, actor, action, request_id)
    VALUES (current_setting('app.clinic_id'), %(patient_id)s, %(actor)s, %(action)s,
            %(request_id)s)
    """,
)
# Operators' listing, as the owner: every clinic the patient id has entries in. The clinic
# list drives one index range per clinic (the index leads with clinic_id).
LIST_FOR_PATIENT = Statement(
    "audit.list_for_patient",
    """
    SELECT a.at, a.clinic_id, a.actor, a.action, a.request_id
    FROM clinics c
    JOIN access_audit a ON a.clinic_id = c.id AND a.patient_id = %(patient_id)s
    WHERE %(clinic_id)s::text IS NULL OR c.id = %(clinic_id)s
    ORDER BY a.at, a.id
    LIMIT %(limit)s
    """,
)
# Many entries of one clinic as five arrays, one prepared statement however many there are:
# the journal's drain (`audit.journal`) and the group-committed trail (`audit.trail`).
RECORD_BATCH = Statement(
    "audit.record_batch",
    """
    INSERT INTO access_audit (clinic_id, patient_id, actor, action, request_id, at)
    SELECT current_setting('app.clinic_id'), patient_id, actor, action, request_id, at
    FROM unnest(%(patient_ids)s::uuid[], %(actors)s::text[], %(actions)s::text[],
                %(request_ids)s::text[], %(ats)s::timestamptz[])
         AS e(patient_id, actor, action, request_id, at)
    """,
)


@dataclass(frozen=True, slots=True)
class Access:
    """One audited access to one patient's record."""

    clinic_id: str
    patient_id: uuid.UUID
    actor: str
    action: Action
    request_id: str | None
    # When the record was read, not when its entry reached the table: a journaled entry
    # is inserted later (`audit.journal`), and the trail is read in access order.
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def batch_params(entries: Sequence[Access]) -> dict[str, list[Any]]:
    """RECORD_BATCH's parameters: the entries (all of one clinic) as five arrays."""
    return {
        "patient_ids": [e.patient_id for e in entries],
        "actors": [e.actor for e in entries],
        "actions": [e.action for e in entries],
        "request_ids": [e.request_id for e in entries],
        "ats": [e.at for e in entries],
    }


class AuditRepository:
    """Appends to and reads the audit trail within the current transaction."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def record(
        self, patient_id: uuid.UUID, actor: str, action: Action, request_id: str | None
    ) -> None:
        """Append one entry for the transaction's clinic."""
        await self._db.execute(
            RECORD,
            {
                "patient_id": patient_id,
                "actor": actor,
                "action": action,
                "request_id": request_id,
            },
        )

    async def record_batch(self, entries: Sequence[Access]) -> None:
        """Append entries of the transaction's clinic, in one statement."""
        await self._db.execute(RECORD_BATCH, batch_params(entries))

    async def list_for_patient(
        self, patient_id: uuid.UUID, clinic_id: str | None, limit: int
    ) -> list[Row]:
        """Entries about one patient, oldest first: time, clinic, actor, action, request id."""
        return await self._db.fetch_all(
            LIST_FOR_PATIENT, {"patient_id": patient_id, "clinic_id": clinic_id, "limit": limit}
        )
