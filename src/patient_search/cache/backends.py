"""Where cached bytes live: Redis for a server of many workers, a dict for one.

Both backends keep the same small vocabulary of operations, including the two that make
invalidation safe: a write that only replaces an older version, and a generation token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, cast

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

# A stored value starts with its version: b"<version>|<payload>". Keeping it in front lets
# Redis compare versions without parsing the payload.
VERSION_SEPARATOR = b"|"


def versioned(version: int, payload: bytes) -> bytes:
    """The stored form of `payload` at `version`."""
    return str(version).encode() + VERSION_SEPARATOR + payload


def split_version(stored: bytes) -> tuple[int, bytes] | None:
    """(version, payload) of a stored value, or None if it is not one."""
    head, separator, payload = stored.partition(VERSION_SEPARATOR)
    if not separator or not head.isdigit():
        return None
    return int(head), payload


class CacheBackend(Protocol):
    """The operations the caching policies need; every method may raise on failure."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def get_journaled(self, key: str, stream: str, entry: bytes) -> tuple[bytes | None, bool]:
        """The key's value; if it holds a record (not a tombstone), `entry` appended to
        `stream` (as its field "e") in the same step. Whether it was appended."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def set_if_not_older(self, key: str, version: int, payload: bytes, ttl_s: float) -> bool:
        """Store unless the key holds a newer version; whether it was stored."""
        ...

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None) -> bytes:
        """Store `value` unless the key exists; the value the key holds afterwards."""
        ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def ping(self) -> None: ...

    async def clear(self) -> None:
        """Drop every key of this service."""
        ...

    async def close(self) -> None: ...


# KEYS[1] key; ARGV[1] version, ARGV[2] stored value, ARGV[3] ttl in ms.
_SET_IF_NOT_OLDER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+)|'))
  if stored and stored > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


# KEYS[1] key, KEYS[2] stream; ARGV[1] the entry. A tombstone ("<version>|") is no record.
_GET_JOURNALED = """
local stored = redis.call('GET', KEYS[1])
if stored and not string.match(stored, '^%d+|$') then
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
  return {stored, 1}
end
return {stored, 0}
"""


class RedisBackend:
    """Redis with timeouts short enough that a slow server costs tens of milliseconds."""

    def __init__(self, url: str, timeout_s: float, key_prefix: str) -> None:
        # A blocking pool: a burst beyond max_connections waits (up to the timeout) for a
        # connection instead of failing, which would open the breaker under mere load.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # A failure goes to the breaker at once; retrying would double the time lost.
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), retries=0),
            health_check_interval=0,
        )
        self._client = redis.Redis.from_pool(pool)  # the client owns (and closes) the pool
        self._set_if_not_older = self._client.register_script(_SET_IF_NOT_OLDER)
        self._get_journaled = self._client.register_script(_GET_JOURNALED)
        self._prefix = key_prefix

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # The client decodes nothing (decode_responses is off): values are bytes or None.
        if len(keys) == 1:
            return [cast(bytes | None, await self._client.get(keys[0]))]
        return cast(list[bytes | None], await self._client.mget(keys))

    async def get_journaled(self, key: str, stream: str, entry: bytes) -> tuple[bytes | None, bool]:
        stored, appended = await self._get_journaled(keys=[key, stream], args=[entry])
        return cast(bytes | None, stored), bool(appended)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._client.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def set_if_not_older(self, key: str, version: int, payload: bytes, ttl_s: float) -> bool:
        stored = await self._set_if_not_older(
            keys=[key], args=[version, versioned(version, payload), max(1, int(ttl_s * 1000))]
        )
        return bool(stored)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None) -> bytes:
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        previous = cast(bytes | None, await self._client.set(key, value, nx=True, px=px, get=True))
        return value if previous is None else previous

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self._client.unlink(*keys)

    async def ping(self) -> None:
        await self._client.ping()

    async def clear(self) -> None:
        batch: list[bytes] = []
        async for key in self._client.scan_iter(match=f"{self._prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self._client.unlink(*batch)
                batch.clear()
        if batch:
            await self._client.unlink(*batch)

    async def close(self) -> None:
        await self._client.aclose()


class MemoryBackend:
    """An in-process LRU with expiry, for a single worker without Redis."""

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        self._max_entries = max_entries

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at is not None and expires_at <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, ttl_s: float | None) -> None:
        expires_at = None if ttl_s is None else time.monotonic() + ttl_s
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def get_journaled(self, key: str, stream: str, entry: bytes) -> tuple[bytes | None, bool]:
        return self._live(key), False  # no journal in process: it would not outlive it

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._store(key, value, ttl_s)

    async def set_if_not_older(self, key: str, version: int, payload: bytes, ttl_s: float) -> bool:
        current = self._live(key)
        parsed = split_version(current) if current is not None else None
        if parsed is not None and parsed[0] > version:
            return False
        self._store(key, versioned(version, payload), ttl_s)
        return True

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None) -> bytes:
        current = self._live(key)
        if current is not None:
            return current
        self._store(key, value, ttl_s)
        return value

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def ping(self) -> None:
        return None

    async def clear(self) -> None:
        self._entries.clear()

    async def close(self) -> None:
        self._entries.clear()


class NullBackend:
    """Stores nothing, so every read misses (PATIENT_SEARCH_CACHE_ENABLED=false)."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    async def get_journaled(self, key: str, stream: str, entry: bytes) -> tuple[bytes | None, bool]:
        return None, False

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        return None

    async def set_if_not_older(self, key: str, version: int, payload: bytes, ttl_s: float) -> bool:
        return False

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None) -> bytes:
        return value

    async def delete(self, keys: Sequence[str]) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def clear(self) -> None:
        return None

    async def close(self) -> None:
        return None
