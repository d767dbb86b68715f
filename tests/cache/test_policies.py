"""The caching policies against a real Redis: fills, expiry, invalidation, races, failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.asyncio as redis

from patient_search.cache.backends import MemoryBackend, RedisBackend
from patient_search.cache.keys import PREFIX, CacheKeys
from patient_search.cache.policies import (
    PROFILE,
    CacheName,
    CachePolicy,
    CacheResult,
    PatientCache,
    Rendered,
)
from patient_search.cache.resilience import GuardedBackend
from patient_search.patients.schemas import Patient, PatientSummary
from patient_search.search.schemas import SearchPage
from tests.factories import new_clinic_id
from tests.private_servers import PrivateRedis

SECRET = "test-cache-key-secret"
T = TypeVar("T")


def a_patient(version: int = 1, last_name: str = "Lovelace") -> Patient:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return Patient(
        id=uuid.UUID("01930000-0000-7000-8000-000000000001"),
        mrn="MRN-1",
        first_name="Ada",
        middle_name=None,
        last_name=last_name,
        date_of_birth=dt.date(1985, 12, 10),
        sex="female",
        status="active",
        phones=["+14155550134"],
        email=None,
        emergency_contacts=[],
        insurance=[],
        version=version,
        created_at=now,
        updated_at=now,
    )


def a_page(total: int) -> SearchPage:
    return SearchPage(items=[], total=total, total_exact=True, next_cursor=None)


def patient(record: Rendered) -> Patient:
    """The profile a response with this body shows."""
    return Patient.model_validate_json(record.body)


def total(record: Rendered) -> int:
    return SearchPage.model_validate_json(record.body).total


class Counts:
    """Counts loads and cache outcomes."""

    def __init__(self) -> None:
        self.loads = 0
        self.outcomes: list[tuple[CacheName, CacheResult]] = []

    def record(self, cache: CacheName, result: CacheResult) -> None:
        self.outcomes.append((cache, result))

    def of(self, result: CacheResult) -> int:
        return sum(1 for _, outcome in self.outcomes if outcome == result)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def loader(
    counts: Counts, value: Callable[[], T], delay: float = 0.0
) -> Callable[[], Awaitable[T]]:
    async def load() -> T:
        counts.loads += 1
        if delay:
            await asyncio.sleep(delay)
        return value()

    return load


def make_cache(
    backend: RedisBackend | MemoryBackend,
    counts: Counts,
    clock: Callable[[], float] = time.time,
    **policy: object,
) -> PatientCache:
    settings = {"cross_process": isinstance(backend, RedisBackend), **policy}
    return PatientCache(
        GuardedBackend(backend, cooldown_s=0.2),
        CacheKeys(SECRET),
        CachePolicy(**settings),
        counts.record,
        clock,
    )


class TestCacheAside:
    async def test_a_miss_fills_and_the_next_read_hits(self, redis_backend: RedisBackend) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        load = loader(counts, a_patient)
        first = await cache.profile(clinic, a_patient().id, load)
        second = await cache.profile(clinic, a_patient().id, load)
        assert first == second
        assert patient(first) == a_patient() and first.version == 1
        assert counts.loads == 1
        assert counts.outcomes == [("profile", "miss"), ("profile", "hit")]

    async def test_an_entry_expires_after_its_ttl(self, redis_backend: RedisBackend) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts, profile_ttl_s=0.3)
        load = loader(counts, a_patient)
        await cache.profile(clinic, a_patient().id, load)
        await asyncio.sleep(0.45)
        await cache.profile(clinic, a_patient().id, load)
        assert counts.loads == 2
        assert counts.of("miss") == 2

    async def test_a_stale_fill_never_replaces_a_newer_write(
        self, redis_backend: RedisBackend
    ) -> None:
        """The classic race: a reader loads v1, the writer commits and stores v2, the reader
        then tries to fill v1. The version guard keeps v2."""
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        reader_loaded = asyncio.Event()
        writer_done = asyncio.Event()

        async def slow_stale_load() -> Patient:
            counts.loads += 1
            reader_loaded.set()
            await writer_done.wait()
            return a_patient(version=1)

        reader = asyncio.create_task(cache.profile(clinic, a_patient().id, slow_stale_load))
        await reader_loaded.wait()
        await cache.patient_written(clinic, a_patient(version=2, last_name="King"))
        writer_done.set()
        assert (await reader).version == 1  # that reader saw its own snapshot...
        fresh = await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
        assert fresh.version == 2 and patient(fresh).last_name == "King"  # ...but nobody after it

    async def test_an_archive_tombstone_blocks_a_late_fill(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        await cache.patient_archived(clinic, a_patient().id, version=2)
        await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
        key = CacheKeys(SECRET).profile(clinic, a_patient().id)
        assert (await redis_backend.get_many([key])) == [b"2|"]  # the v1 fill was refused
        assert counts.outcomes == [("profile", "miss")]


class TestWriteThrough:
    async def test_a_write_stores_profile_and_summary_before_any_read(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        await cache.patient_written(clinic, a_patient(version=3))

        async def never() -> PatientSummary:
            raise AssertionError("a write-through summary must not need the database")

        summary = await cache.summary(clinic, a_patient().id, never)
        assert summary.version == 3
        assert PatientSummary.model_validate_json(summary.body).mrn == "MRN-1"
        assert counts.outcomes == [("summary", "hit")]


class TestSearchGeneration:
    async def test_a_write_retires_every_cached_search_of_the_clinic(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic, other = Counts(), new_clinic_id(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        totals = iter(range(100))

        def page() -> SearchPage:
            return a_page(next(totals))

        load = loader(counts, page)
        assert total(await cache.search(clinic, b"q=smith", load)) == 0
        assert total(await cache.search(clinic, b"q=smith", load)) == 0
        assert total(await cache.search(other, b"q=smith", load)) == 1
        await cache.retire_searches(clinic)
        assert total(await cache.search(clinic, b"q=smith", load)) == 2
        assert total(await cache.search(other, b"q=smith", load)) == 1
        assert counts.loads == 3

    async def test_a_search_computed_before_a_write_is_never_served_after_it(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        started, release = asyncio.Event(), asyncio.Event()

        async def stale() -> SearchPage:
            started.set()
            await release.wait()
            return a_page(1)

        early = asyncio.create_task(cache.search(clinic, b"q=ada", stale))
        await started.wait()
        await cache.retire_searches(clinic)  # the write commits while the search runs
        late = asyncio.create_task(
            cache.search(clinic, b"q=ada", loader(counts, lambda: a_page(2)))
        )
        release.set()
        assert total(await early) == 1
        assert total(await late) == 2  # did not join the pre-write flight
        again = await cache.search(clinic, b"q=ada", loader(counts, lambda: a_page(3)))
        assert total(again) == 2


class TestRefreshAhead:
    async def test_a_hit_late_in_life_is_served_and_refreshed_exactly_once(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic, clock = Counts(), new_clinic_id(), Clock()
        # Two caches on one Redis: two worker processes.
        first = make_cache(redis_backend, counts, clock, search_ttl_s=60)
        second = make_cache(redis_backend, counts, clock, search_ttl_s=60)
        versions = iter(range(100))
        load = loader(counts, lambda: a_page(next(versions)), delay=0.05)
        assert total(await first.search(clinic, b"q=x", load)) == 0
        clock.now += 50  # past 75 % of the 60 s life
        served = await asyncio.gather(
            *(cache.search(clinic, b"q=x", load) for cache in (first, second) * 10)
        )
        assert {total(page) for page in served} == {0}  # served at once, not waited for
        await asyncio.gather(*first._background, *second._background)
        assert counts.loads == 2  # the fill and one refresh
        assert total(await first.search(clinic, b"q=x", load)) == 1
        assert counts.loads == 2

    async def test_a_young_hit_is_not_refreshed(self, redis_backend: RedisBackend) -> None:
        counts, clinic, clock = Counts(), new_clinic_id(), Clock()
        cache = make_cache(redis_backend, counts, clock, search_ttl_s=60)
        load = loader(counts, lambda: a_page(0))
        await cache.search(clinic, b"q=y", load)
        clock.now += 30
        await cache.search(clinic, b"q=y", load)
        assert not cache._background
        assert counts.loads == 1


class TestStampede:
    async def test_a_hundred_concurrent_misses_make_one_load(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        load = loader(counts, a_patient, delay=0.05)
        results = await asyncio.gather(
            *(cache.profile(clinic, a_patient().id, load) for _ in range(100))
        )
        assert counts.loads == 1
        assert all(patient(result) == a_patient() for result in results)

    async def test_misses_in_two_processes_make_one_load(self, redis_backend: RedisBackend) -> None:
        counts, clinic = Counts(), new_clinic_id()
        caches = [make_cache(redis_backend, counts), make_cache(redis_backend, counts)]
        load = loader(counts, a_patient, delay=0.05)
        await asyncio.gather(
            *(caches[i % 2].profile(clinic, a_patient().id, load) for i in range(100))
        )
        assert counts.loads == 1


class TestTenantSafety:
    async def test_a_value_of_another_clinic_is_never_served(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic_a, clinic_b = Counts(), new_clinic_id(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        await cache.patient_written(clinic_a, a_patient())
        keys = CacheKeys(SECRET)
        # Plant clinic A's entry under clinic B's key, as a key-building bug would.
        [stored] = await redis_backend.get_many([keys.profile(clinic_a, a_patient().id)])
        assert stored is not None
        await redis_backend.set(keys.profile(clinic_b, a_patient().id), stored, 60)
        served = await cache.profile(
            clinic_b, a_patient().id, loader(counts, lambda: a_patient(last_name="B"))
        )
        assert patient(served).last_name == "B"
        assert counts.loads == 1

    async def test_keys_carry_the_clinic_and_no_query_text(self) -> None:
        keys = CacheKeys(SECRET)
        key = keys.search("clinic-1", b'{"q":"smith 03/14/1975"}')
        assert "{clinic-1}" in key
        assert "smith" not in key and "1975" not in key
        assert keys.search("clinic-2", b'{"q":"smith 03/14/1975"}') != key
        assert CacheKeys("another secret").search("clinic-1", b'{"q":"smith 03/14/1975"}') != key


class TestCorruptValues:
    async def test_an_unreadable_value_is_a_miss_and_is_replaced(
        self, redis_backend: RedisBackend
    ) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        key = CacheKeys(SECRET).profile(clinic, a_patient().id)
        for garbage in (b"1|{not json", b"\x00\xff", b'1|{"clinic": 1}'):
            await redis_backend.set(key, garbage, 60)
            served = await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
            assert patient(served) == a_patient()
        assert counts.loads == 3
        await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
        assert counts.loads == 3  # the last fill replaced the garbage

    async def test_a_body_cut_short_or_of_another_shape_is_a_miss(
        self, redis_backend: RedisBackend
    ) -> None:
        """A hit is sent verbatim, so a body that is not whole, or was rendered by a release
        whose model differs, must never be served."""
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(redis_backend, counts)
        key = CacheKeys(SECRET).profile(clinic, a_patient().id)
        await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
        [stored] = await redis_backend.get_many([key])
        assert stored is not None
        head, _, body = stored.partition(b"\n")
        older_release = head.replace(PROFILE.shape.encode(), b"0" * len(PROFILE.shape))
        for variant in (head + b"\n" + body[:-9], older_release + b"\n" + body):
            await redis_backend.set(key, variant, 60)
            served = await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
            assert patient(served) == a_patient()
        assert counts.loads == 3
        assert counts.of("hit") == 0


class TestRedisFailures:
    async def test_a_stopped_redis_falls_through_to_the_database_and_comes_back(
        self, private_redis: PrivateRedis
    ) -> None:
        counts, clinic = Counts(), new_clinic_id()
        backend = RedisBackend(private_redis.url, timeout_s=0.3, key_prefix=PREFIX)
        cache = make_cache(backend, counts)
        load = loader(counts, a_patient)
        await cache.profile(clinic, a_patient().id, load)
        private_redis.stop()
        attempts = 0
        real_get_many = backend.get_many

        async def counted_get_many(keys: Sequence[str]) -> list[bytes | None]:
            nonlocal attempts
            attempts += 1
            return await real_get_many(keys)

        backend.get_many = counted_get_many  # type: ignore[method-assign]
        for _ in range(20):
            assert patient(await cache.profile(clinic, a_patient().id, load)) == a_patient()
        # The breaker opened after a few failures: the rest did not even try Redis.
        assert attempts <= 3
        assert cache.backend.state == "open"
        assert counts.of("error") == 20
        private_redis.start()
        await asyncio.sleep(0.25)  # the breaker's cooldown
        backend.get_many = real_get_many  # type: ignore[method-assign]
        await cache.profile(clinic, a_patient().id, load)
        await cache.profile(clinic, a_patient().id, load)
        assert cache.backend.state == "closed"
        assert counts.outcomes[-2:] == [("profile", "miss"), ("profile", "hit")]
        await cache.close()

    async def test_a_write_during_an_outage_is_replayed_before_the_cache_is_read(
        self, private_redis: PrivateRedis
    ) -> None:
        """A hung Redis keeps its data: without the replay, v1 would be served after it thaws."""
        counts, clinic = Counts(), new_clinic_id()
        backend = RedisBackend(private_redis.url, timeout_s=0.3, key_prefix=PREFIX)
        cache = make_cache(backend, counts)
        await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
        await cache.search(clinic, b"q=ada", loader(counts, lambda: a_page(1)))
        private_redis.freeze()
        await cache.patient_written(clinic, a_patient(version=2, last_name="King"))
        private_redis.thaw()
        await asyncio.sleep(0.25)
        fresh = await cache.profile(
            clinic, a_patient().id, loader(counts, lambda: a_patient(2, "King"))
        )
        assert patient(fresh).last_name == "King"
        page = await cache.search(clinic, b"q=ada", loader(counts, lambda: a_page(2)))
        assert total(page) == 2  # the generation moved too
        client = redis.Redis.from_url(private_redis.url)
        key = CacheKeys(SECRET).profile(clinic, a_patient().id)
        assert (await client.get(key) or b"").startswith(b"2|")
        await client.aclose()
        await cache.close()


class TestInProcessBackend:
    async def test_the_same_policies_work_without_redis(self) -> None:
        counts, clinic = Counts(), new_clinic_id()
        cache = make_cache(MemoryBackend(max_entries=100), counts)
        load = loader(counts, a_patient)
        await cache.profile(clinic, a_patient().id, load)
        await cache.profile(clinic, a_patient().id, load)
        await cache.patient_written(clinic, a_patient(version=2, last_name="King"))
        latest = await cache.profile(clinic, a_patient().id, load)
        assert patient(latest).last_name == "King"
        assert counts.loads == 1

    async def test_the_lru_keeps_its_bound(self) -> None:
        backend = MemoryBackend(max_entries=3)
        for i in range(5):
            await backend.set(f"k{i}", b"v", 60)
        assert await backend.get_many(["k0", "k1", "k4"]) == [None, None, b"v"]
