"""Every cached value carries a MAC binding it to its key: what fails it is a miss."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid

import pytest

from patient_search.cache.backends import MemoryBackend, RedisBackend
from patient_search.cache.keys import CacheKeys
from patient_search.cache.policies import PatientCache
from patient_search.signing import MAC_CHARS
from tests.cache.test_policies import SECRET, Counts, a_patient, loader, make_cache, patient
from tests.factories import new_clinic_id


async def stored_profile(
    backend: RedisBackend | MemoryBackend, cache: PatientCache, clinic: str
) -> tuple[str, bytes]:
    await cache.patient_written(clinic, a_patient())
    key = CacheKeys(SECRET).profile(clinic, a_patient().id)
    [stored] = await backend.get_many([key])
    assert stored is not None
    return key, stored


def test_a_value_verifies_only_under_its_key_and_its_secret() -> None:
    keys, clinic = CacheKeys(SECRET), new_clinic_id()
    key = keys.profile(clinic, uuid.uuid4())
    stored = b"3|" + keys.sign(key, 3, b"payload")
    assert keys.verified(key, stored) == (3, b"payload")
    assert keys.verified(keys.profile(clinic, uuid.uuid4()), stored) is None
    assert keys.verified(keys.summary(clinic, uuid.UUID(key.rsplit(":", 1)[1])), stored) is None
    assert CacheKeys("another secret").verified(key, stored) is None
    assert keys.verified(key, b"3|") is None  # a tombstone carries nothing to verify


def test_the_mac_key_is_derived_not_the_secret_itself() -> None:
    keys = CacheKeys(SECRET)
    key, payload = "ps:{c}:profile:x", b"body"
    with_raw_secret = hmac.digest(SECRET.encode(), key.encode() + b"\0" + b"1|" + payload, "sha256")
    assert keys.sign(key, 1, payload)[:MAC_CHARS] != with_raw_secret[:16].hex().encode()
    assert (
        keys.sign(key, 1, payload)[:MAC_CHARS] != hashlib.sha256(payload).hexdigest()[:32].encode()
    )


@pytest.mark.parametrize("where", ["version", "mac", "header", "body"])
async def test_a_genuine_value_altered_anywhere_is_a_miss_and_logged(
    redis_backend: RedisBackend, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    counts, clinic = Counts(), new_clinic_id()
    cache = make_cache(redis_backend, counts)
    key, stored = await stored_profile(redis_backend, cache, clinic)
    at = {
        "version": 0,
        "mac": 2 + 5,
        "header": 2 + MAC_CHARS + 3,
        "body": len(stored) - 5,
    }[where]
    replacement = b"9" if where == "version" else b"Z"
    altered = stored[:at] + replacement + stored[at + 1 :]
    assert altered != stored
    await redis_backend.set(key, altered, 60)

    with caplog.at_level(logging.WARNING, logger="patient_search.cache"):
        served = await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
    assert patient(served) == a_patient()
    assert counts.loads == 1 and counts.of("hit") == 0 and counts.of("miss") == 1
    rejected = [r for r in caplog.records if r.getMessage() == "cache_value_rejected"]
    assert len(rejected) == 1
    assert clinic not in caplog.text and key not in caplog.text  # no key, no clinic, no record


async def test_an_unsigned_value_of_an_older_release_is_a_miss_and_then_replaced(
    redis_backend: RedisBackend,
) -> None:
    counts, clinic = Counts(), new_clinic_id()
    cache = make_cache(redis_backend, counts)
    key, stored = await stored_profile(redis_backend, cache, clinic)
    version, _, signed = stored.partition(b"|")
    await redis_backend.set(key, version + b"|" + signed[MAC_CHARS:], 60)  # the old format

    await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
    await cache.profile(clinic, a_patient().id, loader(counts, a_patient))
    assert counts.loads == 1  # the fill at the same version replaced it
    assert counts.of("hit") == 1


async def test_a_tombstone_is_no_rejection(
    redis_backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    counts, clinic = Counts(), new_clinic_id()
    cache = make_cache(redis_backend, counts)
    await cache.patient_archived(clinic, a_patient().id, 2)
    with caplog.at_level(logging.WARNING, logger="patient_search.cache"):
        assert await cache.profile_hit(clinic, a_patient().id) is None
    assert "cache_value_rejected" not in caplog.text


async def test_the_in_process_cache_signs_and_verifies_too() -> None:
    backend, counts, clinic = MemoryBackend(100), Counts(), new_clinic_id()
    cache = make_cache(backend, counts)
    key, stored = await stored_profile(backend, cache, clinic)
    assert CacheKeys(SECRET).verified(key, stored) is not None
    assert await cache.profile_hit(clinic, a_patient().id) is not None
    await backend.set(key, stored.replace(b"Lovelace", b"Lovelacf"), 60)
    assert await cache.profile_hit(clinic, a_patient().id) is None
