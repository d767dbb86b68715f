"""SQL of the bulk import: COPY a batch into a staging table, then merge it in one go."""

from __future__ import annotations

from collections.abc import Sequence

from patient_search.db.statements import Statement, StatementRunner
from patient_search.ids import uuid7
from patient_search.importing import copy_text
from patient_search.importing.rows import ImportRow
from patient_search.search.index_repository import SearchIndexRepository
from patient_search.search.indexing import NO_BIRTH_DATE

CREATE_STAGING = Statement(
    "import.create_staging",
    """
    CREATE TEMP TABLE IF NOT EXISTS import_staging (
        line integer NOT NULL,
        id uuid NOT NULL,
        mrn text NOT NULL,
        first_name text, middle_name text, last_name text NOT NULL,
        date_of_birth date, sex text, status text NOT NULL,
        email text, email_normalized text,
        phones_raw text[] NOT NULL, phones_e164 text[] NOT NULL,
        first_key text COLLATE "C" NOT NULL, last_key text COLLATE "C" NOT NULL,
        name_terms text[] NOT NULL, joined_terms text[] NOT NULL, address jsonb
    ) ON COMMIT DELETE ROWS
    """,
)
ENSURE_CLINIC = Statement(
    "clinic.ensure",
    "INSERT INTO clinics (id, name) VALUES (%(clinic_id)s, %(clinic_id)s) ON CONFLICT DO NOTHING",
)
# An archived patient's MRN stays taken (the record is kept): such rows are not merged,
# and the caller reports them as rejected.
MERGE_PATIENTS = Statement(
    "import.merge_patients",
    """
    INSERT INTO patients AS p (clinic_id, id, mrn, first_name, middle_name, last_name,
                               date_of_birth, sex, status, email, email_normalized,
                               first_key, last_key, name_terms, address)
    SELECT current_setting('app.clinic_id'), id, mrn, first_name, middle_name, last_name,
           date_of_birth, sex, status, email, email_normalized, first_key, last_key, name_terms,
           address
    FROM import_staging
    ON CONFLICT (clinic_id, mrn) DO UPDATE SET
        first_name = EXCLUDED.first_name, middle_name = EXCLUDED.middle_name,
        last_name = EXCLUDED.last_name, date_of_birth = EXCLUDED.date_of_birth,
        sex = EXCLUDED.sex, status = EXCLUDED.status, email = EXCLUDED.email,
        email_normalized = EXCLUDED.email_normalized,
        first_key = EXCLUDED.first_key, last_key = EXCLUDED.last_key,
        name_terms = EXCLUDED.name_terms, address = EXCLUDED.address,
        version = p.version + 1, updated_at = now()
    WHERE p.deleted_at IS NULL
    RETURNING p.mrn, (p.xmax = 0) AS inserted
    """,
)
DELETE_UPDATED_PHONES = Statement(
    "import.delete_phones",
    """
    DELETE FROM patient_phones ph
    USING import_staging s JOIN patients p ON p.mrn = s.mrn
    WHERE ph.patient_id = p.id AND p.id <> s.id AND p.deleted_at IS NULL
    """,
)
INSERT_PHONES = Statement(
    "import.insert_phones",
    """
    INSERT INTO patient_phones (clinic_id, patient_id, position, raw, e164)
    SELECT p.clinic_id, p.id, t.n, t.raw, t.e164
    FROM import_staging s
    JOIN patients p ON p.mrn = s.mrn AND p.deleted_at IS NULL
    CROSS JOIN LATERAL unnest(s.phones_raw, s.phones_e164) WITH ORDINALITY AS t(raw, e164, n)
    """,
)
DELETE_UPDATED_POSTINGS = Statement(
    "import.delete_postings",
    """
    DELETE FROM patient_name_terms t
    USING import_staging s JOIN patients p ON p.mrn = s.mrn
    WHERE t.patient_id = p.id AND p.id <> s.id AND p.deleted_at IS NULL
    """,
)
INSERT_POSTINGS = Statement(
    "import.insert_postings",
    """
    INSERT INTO patient_name_terms (clinic_id, term, part, last_key, first_key, date_of_birth,
                                    patient_id)
    SELECT p.clinic_id, term,
           NOT (term = ANY(ARRAY[s.first_key, s.last_key,
                                 replace(s.first_key, ' ', ''), replace(s.last_key, ' ', '')])),
           s.last_key, s.first_key,
           COALESCE(s.date_of_birth, %(no_birth_date)s), p.id
    FROM import_staging s
    JOIN patients p ON p.mrn = s.mrn AND p.deleted_at IS NULL
    CROSS JOIN LATERAL unnest(s.name_terms) AS term
    """,
)
BATCH_TERMS = Statement(
    "import.batch_terms",
    """
    SELECT DISTINCT term, term = ANY(joined_terms) AS joined
    FROM import_staging CROSS JOIN LATERAL unnest(name_terms) AS term
    """,
)
# A bulk load runs every batch in one transaction: the staging table is emptied per batch.
CLEAR_STAGING = Statement("import.clear_staging", "TRUNCATE import_staging")
HAS_PATIENTS = Statement(
    "import.has_patients", "SELECT EXISTS (SELECT 1 FROM patients) AS has_patients"
)
ANY_PATIENT = Statement(
    "import.any_patient", "SELECT id FROM patients WHERE deleted_at IS NULL ORDER BY id LIMIT 1"
)
_COPY_COLUMNS = (
    "line, id, mrn, first_name, middle_name, last_name, date_of_birth, sex, status, "
    "email, email_normalized, phones_raw, phones_e164, first_key, last_key, name_terms, "
    "joined_terms, address"
)


class ImportRepository:
    """Writes one batch of validated rows inside the current clinic transaction."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def has_patients(self) -> bool:
        """Whether the clinic holds any patient row at all."""
        row = await self._db.fetch_one(HAS_PATIENTS)
        return bool(row and row["has_patients"])

    async def any_patient_id(self) -> str | None:
        """The id of some live patient of the clinic, for examples."""
        row = await self._db.fetch_one(ANY_PATIENT)
        return None if row is None else str(row["id"])

    async def load_batch(self, clinic_id: str, copy_lines: Sequence[str]) -> dict[str, bool]:
        """Merge rows given as COPY text lines (`copy_line`); for each merged MRN whether it
        was inserted (True) or updated."""
        await self._db.execute(CREATE_STAGING)
        await self._db.execute(ENSURE_CLINIC, {"clinic_id": clinic_id})
        async with self._db.conn.cursor() as cursor:
            async with cursor.copy(f"COPY import_staging ({_COPY_COLUMNS}) FROM STDIN") as copy:
                await copy.write("".join(copy_lines).encode())
        merged = await self._db.fetch_all(MERGE_PATIENTS)
        if any(not row["inserted"] for row in merged):
            await self._db.execute(DELETE_UPDATED_PHONES)
            await self._db.execute(DELETE_UPDATED_POSTINGS)
        await self._db.execute(INSERT_PHONES)
        await self._db.execute(INSERT_POSTINGS, {"no_birth_date": NO_BIRTH_DATE})
        terms = await self._db.fetch_all(BATCH_TERMS)
        await SearchIndexRepository(self._db).add_vocabulary(
            [row["term"] for row in terms], [row["term"] for row in terms if row["joined"]]
        )
        await self._db.execute(CLEAR_STAGING)
        return {str(row["mrn"]): bool(row["inserted"]) for row in merged}


def copy_line(row: ImportRow) -> str:
    """The staging-table row for a validated import row, in COPY text format."""
    return copy_text.line(
        (
            row.line,
            uuid7(),
            row.mrn,
            row.first_name,
            row.middle_name,
            row.last_name,
            row.date_of_birth,
            row.sex,
            row.status,
            row.email,
            row.email_normalized,
            row.phones_raw,
            row.phones_e164,
            row.names.first_key,
            row.names.last_key,
            row.names.terms,
            row.names.joined,
            row.address,
        )
    )
