"""Rules for creating, reading, changing and archiving patients."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from patient_search.audit.journal import JournalSlip
from patient_search.audit.recorders import Auditor, ViewAudit
from patient_search.audit.repository import Action
from patient_search.cache.policies import PatientCache, Rendered
from patient_search.contacts import normalize_email, normalize_phone
from patient_search.db.dependencies import ClinicReader
from patient_search.errors import InvalidRequest, MrnConflict, PatientNotFound, VersionMismatch
from patient_search.ids import uuid7
from patient_search.patients.repository import MrnTaken, PatientRepository
from patient_search.patients.schemas import (
    REQUIRED_ON_PATCH,
    Address,
    EmergencyContact,
    Insurance,
    Patient,
    PatientCreate,
    PatientPatch,
    PatientSummary,
)
from patient_search.search.index_repository import SearchIndexRepository
from patient_search.search.indexing import name_index

# Fields whose change must re-index the patient's name postings.
SEARCHED_FIELDS = frozenset({"first_name", "middle_name", "last_name", "date_of_birth"})
AfterCommit = Callable[[Callable[[], Awaitable[None]]], None]


def _no_cache(action: Callable[[], Awaitable[None]]) -> None:
    """For tools writing outside the service: no cache to tell."""


class PatientService:
    """Patient use cases inside one clinic transaction; the caller's scope commits."""

    def __init__(
        self,
        repository: PatientRepository,
        search_index: SearchIndexRepository,
        clinic_id: str,
        phone_region: str,
        cache: PatientCache | None = None,
        after_commit: AfterCommit = _no_cache,
        audit: Auditor | None = None,
    ) -> None:
        self._repo = repository
        self._search_index = search_index
        self._clinic_id = clinic_id
        self._region = phone_region
        self._cache = cache
        self._after_commit = after_commit
        # Writes are audited in their own transaction: the entry commits with the change.
        self._audit = audit

    async def get(self, patient_id: uuid.UUID) -> Patient:
        """A live patient of the clinic; not found for archived or other clinics' patients."""
        row = await self._repo.get(patient_id)
        if row is None:
            raise PatientNotFound()
        return Patient.model_validate(row)

    async def create(self, data: PatientCreate, *, overriding: bool = False) -> Patient:
        """Register a new patient; the MRN must be free in the clinic. `overriding`: the
        duplicate check suspected an existing patient and the caller registers anyway."""
        patient_id = uuid7()
        await self._repo.ensure_clinic(self._clinic_id)
        columns = data.model_dump(exclude={"phones", "emergency_contacts", "insurance", "address"})
        columns["email_normalized"] = normalize_email(data.email) if data.email else None
        columns["address"] = _address_column(data.address)
        if not await self._repo.insert(self._clinic_id, patient_id, columns):
            raise MrnConflict()
        await self._write_lists(patient_id, data.phones, data.emergency_contacts, data.insurance)
        patient = await self.get(patient_id)
        await self._index(patient)
        await self._audited(patient_id, "create_duplicate" if overriding else "create")
        self._written(patient)
        return patient

    async def update(
        self, patient_id: uuid.UUID, patch: PatientPatch, expected_version: int | None
    ) -> Patient:
        """Apply a partial update; with `expected_version`, only to that version."""
        changes = patch.changes()
        cleared = sorted(
            name for name in REQUIRED_ON_PATCH if name in changes and changes[name] is None
        )
        if cleared:
            raise InvalidRequest(f"these fields cannot be cleared: {', '.join(cleared)}")
        columns: dict[str, Any] = {
            name: value
            for name, value in changes.items()
            if name not in {"phones", "emergency_contacts", "insurance"}
        }
        if "email" in columns:
            columns["email_normalized"] = normalize_email(patch.email) if patch.email else None
        if "address" in columns:
            columns["address"] = _address_column(patch.address)
        if "mrn" in columns and await self._repo.mrn_taken(columns["mrn"], patient_id):
            raise MrnConflict()
        try:
            version = await self._repo.update(patient_id, columns, expected_version)
        except MrnTaken:
            # Taken by a writer racing this one; the request's scope rolls everything back.
            raise MrnConflict() from None
        if version is None:
            current = await self._repo.current_version(patient_id)
            if current is None:
                raise PatientNotFound()
            raise VersionMismatch(current)
        await self._write_lists(patient_id, patch.phones, patch.emergency_contacts, patch.insurance)
        patient = await self.get(patient_id)
        if SEARCHED_FIELDS & changes.keys():
            await self._index(patient)
        await self._audited(patient_id, "update")
        self._written(patient)
        return patient

    async def archive(self, patient_id: uuid.UUID) -> None:
        """Archive the patient: kept for the record, never shown again."""
        version = await self._repo.archive(patient_id)
        if version is None:
            raise PatientNotFound()
        await self._search_index.remove_patient(patient_id)
        await self._audited(patient_id, "archive")
        if self._cache is not None:
            cache, clinic_id = self._cache, self._clinic_id
            self._after_commit(lambda: cache.patient_archived(clinic_id, patient_id, version))

    async def _audited(self, patient_id: uuid.UUID, action: Action) -> None:
        if self._audit is not None:
            await self._audit.record(patient_id, action)

    def _written(self, patient: Patient) -> None:
        if self._cache is not None:
            cache, clinic_id = self._cache, self._clinic_id
            self._after_commit(lambda: cache.patient_written(clinic_id, patient))

    async def _index(self, patient: Patient) -> None:
        names = name_index(patient.first_name, patient.middle_name, patient.last_name)
        await self._search_index.index_patient(patient.id, names, patient.date_of_birth)

    async def _write_lists(
        self,
        patient_id: uuid.UUID,
        phones: list[str] | None,
        contacts: list[EmergencyContact] | None,
        insurance: list[Insurance] | None,
    ) -> None:
        # None means "not sent" (PATCH): the stored list stays as it is.
        if phones is not None:
            await self._repo.replace_phones(
                patient_id, phones, [normalize_phone(p, self._region) for p in phones]
            )
        if contacts is not None:
            await self._repo.replace_emergency_contacts(
                patient_id,
                [
                    {
                        **c.model_dump(),
                        "phone_e164": normalize_phone(c.phone, self._region) if c.phone else None,
                    }
                    for c in contacts
                ],
            )
        if insurance is not None:
            await self._repo.replace_insurance(patient_id, [i.model_dump() for i in insurance])


@dataclass(frozen=True, slots=True)
class CachedRead:
    """What the hit-only read found: a record, or None.

    `journaled`: the view's entry went into the audit journal although no record is served.
    The journal script appends it when the key holds a value, before the service can check
    that value's MAC; if the MAC fails, that entry stands for the view, and the read that
    follows (from the database) must not record another.
    """

    record: Rendered | None
    journaled: bool = False


class PatientLookup:
    """Reads of one patient through the caches; a database transaction only on a miss."""

    def __init__(
        self,
        cache: PatientCache,
        reader: ClinicReader,
        phone_region: str,
        audit: ViewAudit | None = None,
    ) -> None:
        self._cache = cache
        self._reader = reader
        self._region = phone_region
        # Views are audited hit or miss. A hit's entry rides on the cache read when the
        # journal is on; otherwise (and on a miss) it is committed before the response.
        self._audit = audit

    async def profile(self, patient_id: uuid.UUID, *, journaled: bool = False) -> Rendered:
        """The full profile as the API sends it (cache-aside); `journaled`: this view's
        entry is already in the journal (`CachedRead.journaled`), so it is not audited again."""
        slip = self._slip(patient_id, "view", journaled)
        patient = await self._cache.profile(
            self._reader.clinic_id, patient_id, lambda: self._load(patient_id), slip
        )
        await self._audit_unless_journaled(patient_id, "view", slip, journaled)
        return patient

    async def summary(self, patient_id: uuid.UUID, *, journaled: bool = False) -> Rendered:
        """The summary as the API sends it (written through on every write); as `profile`."""

        async def load() -> PatientSummary:
            patient = await self._load(patient_id)
            return PatientSummary.model_validate(patient, from_attributes=True)

        slip = self._slip(patient_id, "summary", journaled)
        summary = await self._cache.summary(self._reader.clinic_id, patient_id, load, slip)
        await self._audit_unless_journaled(patient_id, "summary", slip, journaled)
        return summary

    async def cached(self, patient_id: uuid.UUID, action: Literal["view", "summary"]) -> CachedRead:
        """The profile (`view`) or summary if the cache holds it, audited; else no record,
        nothing loaded (the caller goes on to `profile` or `summary`), and nothing audited
        unless the journal took the entry already (`CachedRead.journaled`)."""
        slip = self._slip(patient_id, action, False)
        clinic_id = self._reader.clinic_id
        if action == "view":
            record = await self._cache.profile_hit(clinic_id, patient_id, slip)
        else:
            record = await self._cache.summary_hit(clinic_id, patient_id, slip)
        if record is not None:
            await self._audit_unless_journaled(patient_id, action, slip, False)
        return CachedRead(record, journaled=slip is not None and slip.appended)

    def _slip(self, patient_id: uuid.UUID, action: Action, journaled: bool) -> JournalSlip | None:
        if self._audit is None or journaled:
            return None
        return self._audit.slip(patient_id, action)

    async def _audit_unless_journaled(
        self, patient_id: uuid.UUID, action: Action, slip: JournalSlip | None, journaled: bool
    ) -> None:
        # A slip the read appended is this view's entry, whether the value it read was served
        # or turned out unusable (the script appends before the service can check the MAC).
        if self._audit is not None and not journaled and (slip is None or not slip.appended):
            await self._audit.record(patient_id, action)

    async def _load(self, patient_id: uuid.UUID) -> Patient:
        async with self._reader.transaction() as db:
            service = PatientService(
                PatientRepository(db),
                SearchIndexRepository(db),
                self._reader.clinic_id,
                self._region,
            )
            return await service.get(patient_id)


def _address_column(address: Address | None) -> dict[str, Any] | None:
    """The address as stored: its parts, or None when no part was given."""
    if address is None or address.is_empty():
        return None
    return address.model_dump(exclude_none=True)
