"""SQL of the duplicate check: candidates by identifier, and the fields compared."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from patient_search.db.statements import Row, Statement, StatementRunner

# Blocking keys besides the names (which search finds): a shared phone or email, or the
# same postal code and date of birth. Equalities on B-tree keys, leakproof under RLS.
IDENTIFIER_CANDIDATES = Statement(
    "match.identifier_candidates",
    """
    (SELECT patient_id AS id FROM patient_phones WHERE e164 = ANY(%(phones)s::text[]) LIMIT 50)
    UNION
    (SELECT id FROM patients
     WHERE email_normalized = ANY(%(emails)s::text[]) AND deleted_at IS NULL LIMIT 50)
    UNION
    (SELECT id FROM patients
     WHERE postal_code_key = %(postal_code)s AND date_of_birth = %(born)s
       AND deleted_at IS NULL LIMIT 50)
    """,
)
CANDIDATE_RECORDS = Statement(
    "match.records",
    """
    SELECT p.id, p.mrn, p.first_name, p.middle_name, p.last_name, p.date_of_birth, p.sex,
           p.status, p.email, p.email_normalized, p.address, p.postal_code_key, p.version,
           ARRAY(SELECT COALESCE(ph.e164, ph.raw) FROM patient_phones ph
                 WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id
                 ORDER BY ph.position) AS phones,
           ARRAY(SELECT ph.e164 FROM patient_phones ph
                 WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id
                   AND ph.e164 IS NOT NULL) AS phones_e164
    FROM patients p WHERE p.id = ANY(%(ids)s::uuid[]) AND p.deleted_at IS NULL
    """,
)


# The clinic's estimated weights (decision 0019): one row per clinic, under RLS.
CLINIC_MODEL = Statement("match.model", "SELECT model FROM match_models")
SAVE_CLINIC_MODEL = Statement(
    "match.save_model",
    """
    INSERT INTO match_models (clinic_id, model)
    VALUES (current_setting('app.clinic_id'), %(model)s)
    ON CONFLICT (clinic_id) DO UPDATE SET model = EXCLUDED.model, estimated_at = now()
    """,
)


class MatchRepository:
    """Read-only duplicate-check queries within the current clinic transaction."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def identifier_candidates(
        self,
        phones: list[str],
        emails: list[str],
        postal_code: str | None,
        born: dt.date | None,
    ) -> set[uuid.UUID]:
        """Patients sharing a phone or an email, or the postal code and date of birth."""
        if not (phones or emails or (postal_code and born)):
            return set()
        rows = await self._db.fetch_all(
            IDENTIFIER_CANDIDATES,
            {"phones": phones, "emails": emails, "postal_code": postal_code, "born": born},
        )
        return {row["id"] for row in rows}

    async def clinic_model(self) -> dict[str, Any] | None:
        """The clinic's estimated model as stored, or None when it has none yet."""
        row = await self._db.fetch_one(CLINIC_MODEL)
        return row["model"] if row else None

    async def save_clinic_model(self, model: dict[str, Any]) -> None:
        """Store (or replace) the clinic's estimated model."""
        await self._db.execute(SAVE_CLINIC_MODEL, {"model": Jsonb(model)})

    async def records(self, ids: list[uuid.UUID]) -> list[Row]:
        """What the comparison and the answer need of each live patient among `ids`."""
        if not ids:
            return []
        return await self._db.fetch_all(CANDIDATE_RECORDS, {"ids": ids})
