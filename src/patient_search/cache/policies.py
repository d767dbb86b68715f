"""The caching policies: profiles cache-aside, summaries write-through, searches refresh-ahead.

Why a reader can never fill the cache with data older than a write it could have seen:
- profiles and summaries are stored with the patient's version and a fill never replaces a
  newer version (`set_if_not_older`); after a write commits, the writer stores the new
  version (or, for an archive, a tombstone at the new version) before it responds;
- searches are filed under the clinic's search generation as read *before* the database;
  a write moves the generation after it commits, so a page computed from an older snapshot
  is filed under a generation no reader asks for again.
Concurrent misses on one key share one load in a process (single flight) and, across
processes, wait briefly for the one holding a short Redis lock.

What is stored is the response body itself, after a one-line header (decision 0015): a hit
is sent as it was read, without a model built from it and serialised again. In front of the
header sits a MAC binding the value to its key (`CacheKeys.sign`): Redis is not trusted to
hand back only what this service wrote, and a value that does not verify is a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel

from patient_search.audit.journal import JournalSlip
from patient_search.cache.backends import split_version, versioned
from patient_search.cache.keys import CacheKeys
from patient_search.cache.resilience import CacheUnavailable, GuardedBackend
from patient_search.patients.schemas import Patient, PatientSummary
from patient_search.search.schemas import SearchPage

log = logging.getLogger("patient_search.cache")

CacheName = Literal["profile", "summary", "search"]
CacheResult = Literal["hit", "miss", "error"]
Recorder = Callable[[CacheName, CacheResult], None]
RejectionRecorder = Callable[[CacheName], None]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# A search page is not versioned; it is stored at version 0 and guarded by its generation.
UNVERSIONED = 0
NO_GENERATION = ""


def no_recording(cache: CacheName, result: CacheResult) -> None:
    """The recorder used when nothing counts cache outcomes."""


def no_rejection_recording(cache: CacheName) -> None:
    """The recorder used when nothing counts rejected values."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Lifetimes and waits; the defaults are the mission's."""

    profile_ttl_s: float = 300.0
    summary_ttl_s: float = 600.0
    search_ttl_s: float = 120.0
    # A search hit in the last quarter of its life is refreshed in the background.
    refresh_ahead_fraction: float = 0.25
    # Another process is filling the key: how long to wait for it before loading too.
    fill_wait_s: float = 0.25
    fill_lock_s: float = 2.0
    # Redis is shared by processes; the in-process backend is not.
    cross_process: bool = True


@dataclass(frozen=True, slots=True)
class Rendered:
    """A record as the API sends it: its JSON body and its version (the ETag)."""

    body: bytes
    version: int = UNVERSIONED


class Form(Generic[M]):
    """How one model is stored: its JSON body after a header naming the clinic, the time,
    the search generation and the model's shape.

    The shape is a digest of the model's JSON schema: after a deploy that changes the model,
    bodies rendered by the old code are misses, not responses in the old shape.
    """

    def __init__(self, name: CacheName, model: type[M]) -> None:
        self.name = name
        self.model = model
        schema = orjson.dumps(model.model_json_schema(), option=orjson.OPT_SORT_KEYS)
        self.shape = hashlib.sha256(schema).hexdigest()[:16]

    def render(self, value: M) -> bytes:
        return value.__pydantic_serializer__.to_json(value)

    def header(self, clinic_id: str, stored_at: float, generation: str) -> bytes:
        fields = {"clinic": clinic_id, "at": stored_at, "gen": generation, "shape": self.shape}
        return orjson.dumps(fields)


@dataclass(frozen=True, slots=True)
class Stored:
    """A readable entry of the caller's clinic."""

    stored_at: float
    generation: str
    record: Rendered


PROFILE = Form("profile", Patient)
SUMMARY = Form("summary", PatientSummary)
SEARCH = Form("search", SearchPage)
# The header ends at the first newline: JSON bodies escape theirs.
HEADER_END = b"\n"


class PatientCache:
    """The service's caches of patient data over one guarded backend."""

    def __init__(
        self,
        backend: GuardedBackend,
        keys: CacheKeys,
        policy: CachePolicy,
        record: Recorder = no_recording,
        clock: Callable[[], float] = time.time,
        record_rejected: RejectionRecorder = no_rejection_recording,
    ) -> None:
        self.backend = backend
        self._keys = keys
        self._policy = policy
        self._record = record
        self._record_rejected = record_rejected
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # --- reads -------------------------------------------------------------------------

    async def profile(
        self,
        clinic_id: str,
        patient_id: uuid.UUID,
        load: Callable[[], Awaitable[Patient]],
        journal: JournalSlip | None = None,
    ) -> Rendered:
        """The full profile: from the cache, else loaded and filled (cache-aside).

        With a `journal` slip, a hit appends its audit entry in the same Redis step.
        """
        key = self._keys.profile(clinic_id, patient_id)
        return await self._versioned_read(
            "profile",
            PROFILE,
            clinic_id,
            key,
            self._policy.profile_ttl_s,
            load,
            lambda patient: patient.version,
            journal,
        )

    async def summary(
        self,
        clinic_id: str,
        patient_id: uuid.UUID,
        load: Callable[[], Awaitable[PatientSummary]],
        journal: JournalSlip | None = None,
    ) -> Rendered:
        """The summary: written through on every write, loaded and filled on a miss."""
        key = self._keys.summary(clinic_id, patient_id)
        return await self._versioned_read(
            "summary",
            SUMMARY,
            clinic_id,
            key,
            self._policy.summary_ttl_s,
            load,
            lambda summary: summary.version,
            journal,
        )

    async def profile_hit(
        self, clinic_id: str, patient_id: uuid.UUID, journal: JournalSlip | None = None
    ) -> Rendered | None:
        """The cached profile, or None (a miss, a tombstone, Redis failing): nothing is loaded
        and only a hit is counted, so a caller that goes on to `profile` counts once."""
        key = self._keys.profile(clinic_id, patient_id)
        return await self._hit("profile", PROFILE, clinic_id, key, journal)

    async def summary_hit(
        self, clinic_id: str, patient_id: uuid.UUID, journal: JournalSlip | None = None
    ) -> Rendered | None:
        """The cached summary, or None; as `profile_hit`."""
        key = self._keys.summary(clinic_id, patient_id)
        return await self._hit("summary", SUMMARY, clinic_id, key, journal)

    async def search(
        self, clinic_id: str, criteria: bytes, load: Callable[[], Awaitable[SearchPage]]
    ) -> Rendered:
        """A search page under the clinic's current generation; refreshed ahead of expiry."""
        key = self._keys.search(clinic_id, criteria)
        generation_key = self._keys.search_generation(clinic_id)
        try:
            generation, stored = await self.backend.call(
                lambda b: b.get_many([generation_key, key])
            )
            if generation is None:
                generation = await self.backend.call(
                    lambda b: b.set_if_absent(generation_key, _new_generation(), None)
                )
        except CacheUnavailable:
            self._record("search", "error")
            return Rendered(SEARCH.render(await load()))
        current = generation.decode()
        entry = self._decode(SEARCH, clinic_id, key, stored)
        if entry is not None and entry.generation == current:
            self._record("search", "hit")
            if self._due_for_refresh(entry.stored_at):
                self._refresh_in_background(key, current, clinic_id, load)
            return entry.record
        self._record("search", "miss")

        async def load_and_store() -> Rendered:
            return await self._store_search(clinic_id, key, current, await load())

        async def filled_by_another() -> Rendered | None:
            found = await self._peek(SEARCH, clinic_id, key)
            return found.record if found is not None and found.generation == current else None

        # The generation is part of the flight: a load that began before a write is never
        # shared with a reader that arrived after it.
        return await self._single_flight(
            f"{key}@{current}",
            lambda: self._fill_exclusively(key, load_and_store, filled_by_another),
        )

    # --- writes (call after the transaction has committed) --------------------------------

    async def patient_written(self, clinic_id: str, patient: Patient) -> None:
        """Replace the profile and the summary, and retire the clinic's cached searches."""
        summary = PatientSummary.model_validate(patient, from_attributes=True)
        await self._must_store(
            PROFILE,
            clinic_id,
            self._keys.profile(clinic_id, patient.id),
            patient,
            patient.version,
            self._policy.profile_ttl_s,
        )
        await self._must_store(
            SUMMARY,
            clinic_id,
            self._keys.summary(clinic_id, patient.id),
            summary,
            patient.version,
            self._policy.summary_ttl_s,
        )
        await self.retire_searches(clinic_id)

    async def patient_archived(self, clinic_id: str, patient_id: uuid.UUID, version: int) -> None:
        """Tombstone the profile and summary at the archive's version; retire searches."""
        for key, ttl in (
            (self._keys.profile(clinic_id, patient_id), self._policy.profile_ttl_s),
            (self._keys.summary(clinic_id, patient_id), self._policy.summary_ttl_s),
        ):
            await self.backend.must_write(key, _tombstone(key, version, ttl))
        await self.retire_searches(clinic_id)

    async def retire_searches(self, clinic_id: str) -> None:
        """Move the clinic's search generation: every cached page of it becomes unreachable."""
        key = self._keys.search_generation(clinic_id)
        generation = _new_generation()
        await self.backend.must_write(key, lambda b: b.set(key, generation, _FOREVER_S))

    async def close(self) -> None:
        """Stop background refreshes and release the backend."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.backend.backend.close()

    # --- machinery -----------------------------------------------------------------------

    async def _versioned_read(
        self,
        cache: CacheName,
        form: Form[M],
        clinic_id: str,
        key: str,
        ttl_s: float,
        load: Callable[[], Awaitable[M]],
        version_of: Callable[[M], int],
        journal: JournalSlip | None = None,
    ) -> Rendered:
        try:
            stored = await self._read(key, journal)
        except CacheUnavailable:
            self._record(cache, "error")
            value = await load()
            return Rendered(form.render(value), version_of(value))
        entry = self._decode(form, clinic_id, key, stored)
        if entry is not None:
            self._record(cache, "hit")
            return entry.record
        self._record(cache, "miss")

        async def load_and_store() -> Rendered:
            value = await load()
            return await self._store(form, clinic_id, key, value, version_of(value), ttl_s)

        async def filled_by_another() -> Rendered | None:
            found = await self._peek(form, clinic_id, key)
            return None if found is None else found.record

        return await self._single_flight(
            key, lambda: self._fill_exclusively(key, load_and_store, filled_by_another)
        )

    async def _hit(
        self,
        cache: CacheName,
        form: Form[M],
        clinic_id: str,
        key: str,
        journal: JournalSlip | None,
    ) -> Rendered | None:
        try:
            entry = self._decode(form, clinic_id, key, await self._read(key, journal))
        except CacheUnavailable:
            return None
        if entry is None:
            return None
        self._record(cache, "hit")
        return entry.record

    async def _read(self, key: str, journal: JournalSlip | None) -> bytes | None:
        """The stored value; with a journal slip, its entry appended if it holds a record."""
        if journal is None:
            [stored] = await self.backend.call(lambda b: b.get_many([key]))
            return stored
        stored, journal.appended = await self.backend.call(
            lambda b: b.get_journaled(key, journal.stream, journal.entry)
        )
        return stored

    async def _single_flight(self, flight: str, produce: Callable[[], Awaitable[T]]) -> T:
        task = self._inflight.get(flight)
        if task is None:
            task = asyncio.ensure_future(produce())
            self._inflight[flight] = task
            task.add_done_callback(lambda _: self._inflight.pop(flight, None))
        # shield: one caller giving up (a client disconnect) does not cancel the others' load.
        result: T = await asyncio.shield(task)
        return result

    async def _fill_exclusively(
        self,
        key: str,
        load_and_store: Callable[[], Awaitable[T]],
        filled_by_another: Callable[[], Awaitable[T | None]],
    ) -> T:
        """Across processes, one loads while the others wait briefly for its fill."""
        if not self._policy.cross_process:
            return await load_and_store()
        lock_key = CacheKeys.fill_lock(key)
        token = secrets.token_hex(8).encode()
        try:
            holder = await self.backend.call(
                lambda b: b.set_if_absent(lock_key, token, self._policy.fill_lock_s)
            )
        except CacheUnavailable:
            return await load_and_store()
        if holder == token:
            try:
                return await load_and_store()
            finally:
                await self.backend.delete_quietly([lock_key])
        waited, delay = 0.0, 0.002
        while waited < self._policy.fill_wait_s:
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)
            found = await filled_by_another()
            if found is not None:
                return found
        return await load_and_store()

    def _due_for_refresh(self, stored_at: float) -> bool:
        age = self._clock() - stored_at
        return age >= self._policy.search_ttl_s * (1 - self._policy.refresh_ahead_fraction)

    def _refresh_in_background(
        self, key: str, generation: str, clinic_id: str, load: Callable[[], Awaitable[SearchPage]]
    ) -> None:
        flight = f"{key}@{generation}:refresh"
        if flight in self._inflight:
            return
        task = asyncio.ensure_future(self._refresh(key, generation, clinic_id, load))
        self._inflight[flight] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self._inflight.pop(flight, None))

    async def _refresh(
        self, key: str, generation: str, clinic_id: str, load: Callable[[], Awaitable[SearchPage]]
    ) -> None:
        # The lock lives as long as the refresh window, and is not released: a process that
        # read the old entry just before the refresh landed must not refresh it again.
        lock_key = CacheKeys.refresh_lock(key)
        window = self._policy.search_ttl_s * self._policy.refresh_ahead_fraction
        token = secrets.token_hex(8).encode()
        try:
            holder = await self.backend.call(lambda b: b.set_if_absent(lock_key, token, window))
        except CacheUnavailable:
            return
        if holder != token:
            return
        try:
            page = await load()
        except Exception as exc:  # the stale-but-valid page stays; the next miss loads
            log.warning("search_refresh_failed", extra={"error": type(exc).__name__})
            return
        await self._store_search(clinic_id, key, generation, page)

    async def _peek(self, form: Form[M], clinic_id: str, key: str) -> Stored | None:
        try:
            [stored] = await self.backend.call(lambda b: b.get_many([key]))
        except CacheUnavailable:
            return None
        return self._decode(form, clinic_id, key, stored)

    def _decode(
        self, form: Form[M], clinic_id: str, key: str, stored: bytes | None
    ) -> Stored | None:
        """The entry if this service stored it under `key` (its MAC holds), whole, current
        in shape and the caller's clinic's; else a miss."""
        if stored is None:
            return None
        verified = self._keys.verified(key, stored)
        if verified is None:
            if not _is_tombstone(stored):
                # Written or altered by someone without the secret, copied from another key,
                # or stored by a release before values were signed: loaded again.
                log.warning("cache_value_rejected", extra={"entry": form.model.__name__})
                self._record_rejected(form.name)
            return None
        version, payload = verified
        head, _, body = payload.partition(HEADER_END)
        try:
            header = orjson.loads(head)
            orjson.loads(body)  # whole: a value cut short is a miss, never a broken response
            stored_at, generation, shape = header["at"], header["gen"], header["shape"]
            clinic = header["clinic"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("cache_value_unreadable", extra={"entry": form.model.__name__})
            return None
        if shape != form.shape:
            return None  # rendered by a release with another model: loaded again
        if clinic != clinic_id:
            log.error("cache_clinic_mismatch", extra={"entry": form.model.__name__})
            return None
        return Stored(float(stored_at), str(generation), Rendered(body, version))

    def _encode(
        self, form: Form[M], clinic_id: str, key: str, version: int, body: bytes, generation: str
    ) -> bytes:
        """The payload stored at `version` under `key`: MAC, header, newline, body."""
        payload = form.header(clinic_id, self._clock(), generation) + HEADER_END + body
        return self._keys.sign(key, version, payload)

    async def _store(
        self,
        form: Form[M],
        clinic_id: str,
        key: str,
        value: M,
        version: int,
        ttl_s: float,
    ) -> Rendered:
        record = Rendered(form.render(value), version)
        payload = self._encode(form, clinic_id, key, version, record.body, NO_GENERATION)
        try:
            await self.backend.call(lambda b: b.set_if_not_older(key, version, payload, ttl_s))
        except CacheUnavailable:
            pass  # a fill that did not happen is only a later miss
        return record

    async def _must_store(
        self,
        form: Form[M],
        clinic_id: str,
        key: str,
        value: M,
        version: int,
        ttl_s: float,
    ) -> None:
        payload = self._encode(form, clinic_id, key, version, form.render(value), NO_GENERATION)
        await self.backend.must_write(
            key, lambda b: b.set_if_not_older(key, version, payload, ttl_s)
        )

    async def _store_search(
        self, clinic_id: str, key: str, generation: str, page: SearchPage
    ) -> Rendered:
        record = Rendered(SEARCH.render(page))
        signed = self._encode(SEARCH, clinic_id, key, UNVERSIONED, record.body, generation)
        payload = versioned(UNVERSIONED, signed)
        try:
            await self.backend.call(lambda b: b.set(key, payload, self._policy.search_ttl_s))
        except CacheUnavailable:
            pass
        return record


# The generation key outlives any page filed under it by far; it is tiny and per clinic.
_FOREVER_S = 30 * 24 * 3600.0


def _is_tombstone(stored: bytes) -> bool:
    """A bare version ("<version>|"): an archive's marker, never served, so never signed."""
    parsed = split_version(stored)
    return parsed is not None and not parsed[1]


def _new_generation() -> bytes:
    return secrets.token_hex(8).encode()


def _tombstone(key: str, version: int, ttl_s: float) -> Callable[..., Awaitable[object]]:
    return lambda b: b.set_if_not_older(key, version, b"", ttl_s)
