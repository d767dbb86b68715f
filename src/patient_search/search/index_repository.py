"""SQL that keeps the search structures in step with patient writes."""

from __future__ import annotations

import datetime as dt
import uuid

from patient_search.db.statements import Statement, StatementRunner
from patient_search.search.indexing import NO_BIRTH_DATE, NameIndex, vocabulary_keys

SET_NAME_KEYS = Statement(
    "search_index.set_name_keys",
    """
    UPDATE patients SET first_key = %(first_key)s, last_key = %(last_key)s, name_terms = %(terms)s
    WHERE id = %(id)s
    """,
)
DELETE_POSTINGS = Statement(
    "search_index.delete_postings",
    "DELETE FROM patient_name_terms WHERE patient_id = %(id)s",
)
INSERT_POSTINGS = Statement(
    "search_index.insert_postings",
    """
    INSERT INTO patient_name_terms (clinic_id, term, part, last_key, first_key, date_of_birth,
                                    patient_id)
    SELECT current_setting('app.clinic_id'), term,
           NOT (term = ANY(ARRAY[%(first_key)s, %(last_key)s,
                                 replace(%(first_key)s, ' ', ''), replace(%(last_key)s, ' ', '')])),
           %(last_key)s, %(first_key)s, %(dob)s, %(id)s
    FROM unnest(%(terms)s::text[]) AS term
    """,
)
# Returns only the terms the clinic's vocabulary did not have: their keys are new too.
ADD_VOCABULARY = Statement(
    "search_index.add_vocabulary",
    """
    INSERT INTO search_vocabulary (clinic_id, term, joined)
    SELECT current_setting('app.clinic_id'), term, term = ANY(%(joined)s::text[])
    FROM unnest(%(terms)s::text[]) AS term
    ON CONFLICT DO NOTHING
    RETURNING term
    """,
)
ADD_VOCABULARY_KEYS = Statement(
    "search_index.add_vocabulary_keys",
    """
    INSERT INTO search_vocabulary_keys (clinic_id, key, term)
    SELECT current_setting('app.clinic_id'), key, term
    FROM unnest(%(keys)s::text[], %(terms)s::text[]) AS t(key, term)
    ON CONFLICT DO NOTHING
    """,
)


class SearchIndexRepository:
    """Writes postings and vocabulary within the current clinic transaction."""

    def __init__(self, runner: StatementRunner) -> None:
        self._db = runner

    async def index_patient(
        self, patient_id: uuid.UUID, names: NameIndex, date_of_birth: dt.date | None
    ) -> None:
        """Replace the patient's keys and postings, and extend the clinic's vocabulary."""
        await self._db.execute(
            SET_NAME_KEYS,
            {
                "id": patient_id,
                "first_key": names.first_key,
                "last_key": names.last_key,
                "terms": names.terms,
            },
        )
        await self.remove_patient(patient_id)
        await self._db.execute(
            INSERT_POSTINGS,
            {
                "id": patient_id,
                "terms": names.terms,
                "last_key": names.last_key,
                "first_key": names.first_key,
                "dob": date_of_birth or NO_BIRTH_DATE,
            },
        )
        await self.add_vocabulary(names.terms, names.joined)

    async def remove_patient(self, patient_id: uuid.UUID) -> None:
        """Take the patient out of search (archive, or before re-indexing)."""
        await self._db.execute(DELETE_POSTINGS, {"id": patient_id})

    async def add_vocabulary(self, terms: list[str], joined: list[str]) -> None:
        """Add terms to the clinic's vocabulary, with the fuzzy keys of those that are new."""
        params = {"terms": terms, "joined": joined}
        new_terms = [row["term"] for row in await self._db.fetch_all(ADD_VOCABULARY, params)]
        keys: list[str] = []
        owners: list[str] = []
        for term in new_terms:
            for key in vocabulary_keys(term):
                keys.append(key)
                owners.append(term)
        if keys:
            await self._db.execute(ADD_VOCABULARY_KEYS, {"keys": keys, "terms": owners})
