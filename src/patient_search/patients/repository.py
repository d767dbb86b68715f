"""SQL for patient records. Row-level security scopes every statement to the caller's clinic."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import sql
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb

from patient_search.db.statements import Row, Statement, StatementRunner

_PROFILE_COLUMNS = """
    p.id, p.mrn, p.first_name, p.middle_name, p.last_name, p.date_of_birth, p.sex, p.status,
    p.email, p.address, p.version, p.created_at, p.updated_at,
    COALESCE((SELECT array_agg(COALESCE(ph.e164, ph.raw) ORDER BY ph.position)
              FROM patient_phones ph
              WHERE ph.clinic_id = p.clinic_id AND ph.patient_id = p.id), '{}') AS phones,
    COALESCE((SELECT json_agg(json_build_object(
                  'name', ec.name, 'relationship', ec.relationship,
                  'phone', COALESCE(ec.phone_e164, ec.phone)) ORDER BY ec.position)
              FROM emergency_contacts ec
              WHERE ec.clinic_id = p.clinic_id AND ec.patient_id = p.id), '[]')
        AS emergency_contacts,
    COALESCE((SELECT json_agg(json_build_object(
                  'payer', ip.payer, 'member_id', ip.member_id) ORDER BY ip.position)
              FROM insurance_policies ip
              WHERE ip.clinic_id = p.clinic_id AND ip.patient_id = p.id), '[]') AS insurance
"""

GET_PROFILE = Statement(
    "patient.get",
    "SELECT" + _PROFILE_COLUMNS + "FROM patients p WHERE p.id = %(id)s AND p.deleted_at IS NULL",
)
ENSURE_CLINIC = Statement(
    "clinic.ensure",
    "INSERT INTO clinics (id, name) VALUES (%(clinic_id)s, %(clinic_id)s) ON CONFLICT DO NOTHING",
)
INSERT_PATIENT = Statement(
    "patient.insert",
    """
    INSERT INTO patients (clinic_id, id, mrn, first_name, middle_name, last_name,
                          date_of_birth, sex, status, email, email_normalized, address)
    VALUES (%(clinic_id)s, %(id)s, %(mrn)s, %(first_name)s, %(middle_name)s, %(last_name)s,
            %(date_of_birth)s, %(sex)s, %(status)s, %(email)s, %(email_normalized)s,
            %(address)s)
    ON CONFLICT (clinic_id, mrn) DO NOTHING
    RETURNING id
    """,
)
CURRENT_VERSION = Statement(
    "patient.version",
    "SELECT version FROM patients WHERE id = %(id)s AND deleted_at IS NULL",
)
ARCHIVE_PATIENT = Statement(
    "patient.archive",
    """
    UPDATE patients SET deleted_at = now(), updated_at = now(), version = version + 1
    WHERE id = %(id)s AND deleted_at IS NULL
    RETURNING version
    """,
)
# UNIQUE (clinic_id, mrn), migration 0001: the last word on whether an MRN is free.
MRN_CONSTRAINT = "patients_mrn_unique_per_clinic"
MRN_TAKEN = Statement(
    "patient.mrn_taken",
    "SELECT 1 AS taken FROM patients WHERE mrn = %(mrn)s AND id <> %(id)s",
)
DELETE_PHONES = Statement(
    "patient_phones.delete",
    "DELETE FROM patient_phones WHERE patient_id = %(id)s",
)
INSERT_PHONES = Statement(
    "patient_phones.insert",
    """
    INSERT INTO patient_phones (clinic_id, patient_id, position, raw, e164)
    SELECT current_setting('app.clinic_id'), %(id)s, n, raw, e164
    FROM unnest(%(raw)s::text[], %(e164)s::text[]) WITH ORDINALITY AS t(raw, e164, n)
    """,
)
DELETE_EMERGENCY_CONTACTS = Statement(
    "emergency_contacts.delete",
    "DELETE FROM emergency_contacts WHERE patient_id = %(id)s",
)
INSERT_EMERGENCY_CONTACTS = Statement(
    "emergency_contacts.insert",
    """
    INSERT INTO emergency_contacts (clinic_id, patient_id, position, name, relationship,
                                    phone, phone_e164)
    SELECT current_setting('app.clinic_id'), %(id)s, n, name, relationship, phone, e164
    FROM unnest(%(name)s::text[], %(relationship)s::text[], %(phone)s::text[], %(e164)s::text[])
         WITH ORDINALITY AS t(name, relationship, phone, e164, n)
    """,
)
DELETE_INSURANCE = Statement(
    "insurance_policies.delete",
    "DELETE FROM insurance_policies WHERE patient_id = %(id)s",
)
INSERT_INSURANCE = Statement(
    "insurance_policies.insert",
    """
    INSERT INTO insurance_policies (clinic_id, patient_id, position, payer, member_id)
    SELECT current_setting('app.clinic_id'), %(id)s, n, payer, member_id
    FROM unnest(%(payer)s::text[], %(member_id)s::text[]) WITH ORDINALITY AS t(payer, member_id, n)
    """,
)

# Columns a PATCH may set directly; list fields live in their own tables.
UPDATABLE_COLUMNS = (
    "mrn",
    "first_name",
    "middle_name",
    "last_name",
    "date_of_birth",
    "sex",
    "status",
    "email",
    "email_normalized",
    "address",
)


class MrnTaken(Exception):
    """Another patient of the clinic holds the MRN; the transaction is aborted and must be
    rolled back."""


class PatientRepository:
    """Reads and writes patient rows within the current clinic transaction."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def get(self, patient_id: uuid.UUID) -> Row | None:
        """The full profile of a live (not archived) patient."""
        return await self._db.fetch_one(GET_PROFILE, {"id": patient_id})

    async def ensure_clinic(self, clinic_id: str) -> None:
        """Register the clinic on its first write."""
        await self._db.execute(ENSURE_CLINIC, {"clinic_id": clinic_id})

    async def insert(self, clinic_id: str, patient_id: uuid.UUID, fields: dict[str, Any]) -> bool:
        """Insert the patient row; False when the MRN is already taken in the clinic, also
        by a racing writer (ON CONFLICT waits for its commit: no unique violation escapes)."""
        row = await self._db.fetch_one(
            INSERT_PATIENT,
            {**_with_json(fields), "clinic_id": clinic_id, "id": patient_id},
        )
        return row is not None

    async def current_version(self, patient_id: uuid.UUID) -> int | None:
        """The version of a live patient, or None."""
        row = await self._db.fetch_one(CURRENT_VERSION, {"id": patient_id})
        return None if row is None else int(row["version"])

    async def mrn_taken(self, mrn: str, patient_id: uuid.UUID) -> bool:
        """Whether another patient of the clinic (archived ones included) holds the MRN."""
        return await self._db.fetch_one(MRN_TAKEN, {"mrn": mrn, "id": patient_id}) is not None

    async def update(
        self, patient_id: uuid.UUID, columns: dict[str, Any], expected_version: int | None
    ) -> int | None:
        """Set columns and bump the version; the new version, or None if nothing matched.

        Raises `MrnTaken` when the new MRN is another patient's: a writer that committed it
        after the service's check (or waits to) is only seen by the unique constraint."""
        assignments = [
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in columns
            if name in UPDATABLE_COLUMNS
        ]
        query = sql.SQL(
            "UPDATE patients SET {assignments}version = version + 1, updated_at = now() "
            "WHERE id = %(id)s AND deleted_at IS NULL{version_guard} RETURNING version"
        ).format(
            assignments=sql.SQL("").join(a + sql.SQL(", ") for a in assignments),
            version_guard=sql.SQL(" AND version = %(expected)s")
            if expected_version is not None
            else sql.SQL(""),
        )
        params = {**_with_json(columns), "id": patient_id, "expected": expected_version}
        try:
            row = await self._db.fetch_one(Statement("patient.update", query), params)
        except UniqueViolation as exc:
            if exc.diag.constraint_name != MRN_CONSTRAINT:
                raise
            # Not chained: the database's message quotes the MRN.
            raise MrnTaken() from None
        return None if row is None else int(row["version"])

    async def archive(self, patient_id: uuid.UUID) -> int | None:
        """Archive a live patient; the archived version, or None when there is none."""
        row = await self._db.fetch_one(ARCHIVE_PATIENT, {"id": patient_id})
        return None if row is None else int(row["version"])

    async def replace_phones(
        self, patient_id: uuid.UUID, raw: list[str], e164: list[str | None]
    ) -> None:
        """Replace the patient's phones, keeping their order."""
        await self._db.execute(DELETE_PHONES, {"id": patient_id})
        if raw:
            await self._db.execute(INSERT_PHONES, {"id": patient_id, "raw": raw, "e164": e164})

    async def replace_emergency_contacts(
        self, patient_id: uuid.UUID, contacts: list[dict[str, Any]]
    ) -> None:
        """Replace the patient's emergency contacts, keeping their order."""
        await self._db.execute(DELETE_EMERGENCY_CONTACTS, {"id": patient_id})
        if contacts:
            await self._db.execute(
                INSERT_EMERGENCY_CONTACTS,
                {
                    "id": patient_id,
                    "name": [c["name"] for c in contacts],
                    "relationship": [c["relationship"] for c in contacts],
                    "phone": [c["phone"] for c in contacts],
                    "e164": [c["phone_e164"] for c in contacts],
                },
            )

    async def replace_insurance(
        self, patient_id: uuid.UUID, policies: list[dict[str, Any]]
    ) -> None:
        """Replace the patient's insurance policies, keeping their order."""
        await self._db.execute(DELETE_INSURANCE, {"id": patient_id})
        if policies:
            await self._db.execute(
                INSERT_INSURANCE,
                {
                    "id": patient_id,
                    "payer": [p["payer"] for p in policies],
                    "member_id": [p["member_id"] for p in policies],
                },
            )


def _with_json(columns: dict[str, Any]) -> dict[str, Any]:
    """Column values as psycopg sends them: the address (a dict or None) as jsonb."""
    if columns.get("address") is None:
        return columns
    return {**columns, "address": Jsonb(columns["address"])}
