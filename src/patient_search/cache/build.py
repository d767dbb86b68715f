"""Builds the service's cache from the settings: Redis when configured, else in-process."""

from __future__ import annotations

from patient_search.cache.backends import CacheBackend, MemoryBackend, NullBackend, RedisBackend
from patient_search.cache.keys import PREFIX, CacheKeys
from patient_search.cache.policies import (
    CachePolicy,
    PatientCache,
    Recorder,
    RejectionRecorder,
    no_recording,
    no_rejection_recording,
)
from patient_search.cache.resilience import GuardedBackend
from patient_search.settings import Settings


def build_patient_cache(
    settings: Settings,
    record: Recorder = no_recording,
    record_rejected: RejectionRecorder = no_rejection_recording,
) -> PatientCache:
    """The cache policies over the configured backend, behind a circuit breaker."""
    backend: CacheBackend
    if not settings.cache_enabled:
        backend = NullBackend()
    elif settings.redis_url:
        backend = RedisBackend(settings.redis_url, settings.redis_timeout_ms / 1000, PREFIX)
    else:
        backend = MemoryBackend(settings.cache_memory_max_entries)
    policy = CachePolicy(
        profile_ttl_s=settings.cache_profile_ttl_s,
        summary_ttl_s=settings.cache_summary_ttl_s,
        search_ttl_s=settings.cache_search_ttl_s,
        refresh_ahead_fraction=settings.cache_refresh_ahead_fraction,
        cross_process=isinstance(backend, RedisBackend),
    )
    guarded = GuardedBackend(backend, cooldown_s=settings.cache_breaker_cooldown_s)
    keys = CacheKeys(settings.effective_jwt_secret)
    return PatientCache(guarded, keys, policy, record, record_rejected=record_rejected)


def describe_backend(settings: Settings) -> str:
    """What /readyz calls the cache when it does not need to ask it."""
    if not settings.cache_enabled:
        return "disabled"
    return "redis" if settings.redis_url else "in-process"
