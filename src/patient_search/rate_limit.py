"""Per-user rate limiting of search, so one runaway client cannot starve its clinic.

A token bucket per (clinic, token sub), written as GCRA: one number per user, the
theoretical arrival time (TAT) of the next request. A request is allowed while
`TAT - now <= (burst - 1) * interval`; allowing it moves TAT one interval on.

- With Redis configured the bucket lives there (one Lua script, one round trip, Redis's
  clock), so every worker and host shares it.
- Without Redis, or while Redis is failing, each worker keeps its own buckets: a user then
  gets up to (workers x rate) for as long as Redis is away. That is a deliberate middle way:
  failing closed would turn a cache outage into a search outage, and failing open would
  drop the protection exactly when the system is degraded.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import cast

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from patient_search.errors import RateLimited
from patient_search.settings import Settings

log = logging.getLogger("patient_search.rate_limit")
KEY_PREFIX = "ps-rate:"
# Beyond this many users a worker's own buckets are swept of those that are full again.
MAX_LOCAL_BUCKETS = 50_000

# KEYS[1] bucket; ARGV[1] interval in µs, ARGV[2] tolerance in µs. Returns 0 when allowed,
# else the µs to wait. Redis's clock, so hosts with skewed clocks share one bucket fairly.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
local new_tat = tat + interval
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return 0
"""


class LocalBuckets:
    """GCRA buckets in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tat: dict[str, float] = {}
        self._clock = clock

    def take(self, key: str, interval_s: float, tolerance_s: float) -> float:
        """0 when allowed (and counted), else the seconds to wait."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        wait = tat - tolerance_s - now
        if wait > 0:
            return wait
        if len(self._tat) >= MAX_LOCAL_BUCKETS and key not in self._tat:
            self._sweep(now)
        self._tat[key] = tat + interval_s
        return 0.0

    def _sweep(self, now: float) -> None:
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now}


class RateLimiter:
    """`rate_per_minute` sustained and `burst` at once per user; Redis when configured."""

    def __init__(
        self,
        rate_per_minute: int,
        burst: int,
        *,
        redis_url: str = "",
        redis_timeout_s: float = 0.05,
        cooldown_s: float = 1.0,
        scope: str = "search",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = rate_per_minute > 0
        self._interval_s = 60.0 / rate_per_minute if self.enabled else 0.0
        self._tolerance_s = self._interval_s * (burst - 1)
        self._args = (round(self._interval_s * 1e6), round(self._tolerance_s * 1e6))
        self._scope = scope
        self._local = LocalBuckets(clock)
        self._clock = clock
        self._cooldown_s = cooldown_s
        self._redis_down_until = 0.0
        self._client: redis.Redis | None = None
        if redis_url and self.enabled:
            pool = redis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=32,
                timeout=redis_timeout_s,
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
                retry_on_timeout=False,
                retry=Retry(NoBackoff(), retries=0),
            )
            self._client = redis.Redis.from_pool(pool)
            self._script = self._client.register_script(_GCRA)

    @property
    def shared(self) -> bool:
        """Whether buckets are in Redis right now (not this worker's own)."""
        return self._client is not None and self._redis_down_until == 0.0

    async def check(self, clinic_id: str, user_id: str) -> None:
        """Count one request of the user; raise RateLimited when over the limit."""
        if not self.enabled:
            return
        key = self._key(clinic_id, user_id)
        wait_s = await self._take(key)
        if wait_s > 0:
            raise RateLimited(max(1, math.ceil(wait_s)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _key(self, clinic_id: str, user_id: str) -> str:
        # The sub is the caller's choice of text (up to 200 characters): hash it to a fixed size.
        digest = hashlib.blake2b(user_id.encode(), digest_size=12).hexdigest()
        return f"{KEY_PREFIX}{{{clinic_id}}}:{self._scope}:{digest}"

    async def _take(self, key: str) -> float:
        if self._client is not None and self._clock() >= self._redis_down_until:
            try:
                wait_us = cast(int, await self._script(keys=[key], args=self._args))
            except Exception as exc:  # any Redis failure: this worker limits on its own
                if self._redis_down_until == 0.0:
                    log.warning("rate_limit_redis_unavailable", extra={"error": type(exc).__name__})
                self._redis_down_until = self._clock() + self._cooldown_s
            else:
                if self._redis_down_until:
                    log.info("rate_limit_redis_recovered")
                    self._redis_down_until = 0.0
                return int(wait_us) / 1e6
        return self._local.take(key, self._interval_s, self._tolerance_s)


def build_search_limiter(settings: Settings) -> RateLimiter:
    """The search limiter the settings ask for; Redis-backed when Redis is configured."""
    return RateLimiter(
        settings.search_rate_per_minute,
        # One user's burst never exceeds what the pool can serve at once.
        min(settings.search_rate_burst, settings.db_pool_max),
        redis_url=settings.redis_url,
        redis_timeout_s=settings.redis_timeout_ms / 1000,
        cooldown_s=settings.cache_breaker_cooldown_s,
    )
