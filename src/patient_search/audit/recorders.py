"""What services call to audit an access; bound to the acting user and the request."""

from __future__ import annotations

import uuid
from typing import Protocol

from patient_search.audit.journal import AuditJournal, JournalSlip
from patient_search.audit.repository import Access, Action, AuditRepository
from patient_search.audit.trail import AccessTrail


class Auditor(Protocol):
    """Records that the bound user did `action` to a patient of the bound clinic."""

    async def record(self, patient_id: uuid.UUID, action: Action) -> None: ...


class WriteAudit:
    """Appends inside the writing transaction: the entry commits (or not) with the write."""

    def __init__(self, repository: AuditRepository, actor: str, request_id: str | None) -> None:
        self._repository = repository
        self._actor = actor
        self._request_id = request_id

    async def record(self, patient_id: uuid.UUID, action: Action) -> None:
        await self._repository.record(patient_id, self._actor, action, self._request_id)


class ViewAudit:
    """A view's entry: journaled with the cache hit that serves it, else through the trail
    (`record` returns once the entry has committed)."""

    def __init__(
        self,
        trail: AccessTrail,
        clinic_id: str,
        actor: str,
        request_id: str | None,
        journal: AuditJournal | None = None,
    ) -> None:
        self._trail = trail
        self._journal = journal
        self._clinic_id = clinic_id
        self._actor = actor
        self._request_id = request_id

    def _access(self, patient_id: uuid.UUID, action: Action) -> Access:
        return Access(self._clinic_id, patient_id, self._actor, action, self._request_id)

    def slip(self, patient_id: uuid.UUID, action: Action) -> JournalSlip | None:
        """The entry for the cache read to append on a hit; None when views are not journaled."""
        if self._journal is None:
            return None
        return self._journal.slip(self._access(patient_id, action))

    async def record(self, patient_id: uuid.UUID, action: Action) -> None:
        await self._trail.record(self._access(patient_id, action))
