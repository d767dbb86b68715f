"""Cache key names, and the MACs that bind stored values to them.

Every key carries its clinic; no key carries patient data in clear. The clinic sits in
braces (a Redis Cluster hash tag), so one clinic's keys — its search generation and the
pages filed under it — live on one shard.

Whoever can reach Redis can write any value under any key, so every value the service
reads back carries an HMAC, under a key derived from the service secret, of the key it
is filed under, its version and its bytes: a value written by anyone else, altered, or
copied to another key (another clinic's, another patient's) does not verify and is a miss.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from patient_search.cache.backends import split_version
from patient_search.signing import derive_key, mac, split_signed

PREFIX = "ps:"


class CacheKeys:
    """Builds the keys; search criteria are keyed by an HMAC, not a plain hash.

    A plain hash of "smith 03/14/1975" could be confirmed by hashing guesses; an HMAC
    under the service's secret cannot.
    """

    def __init__(self, secret: str) -> None:
        self._secret = derive_key(secret, b"cache keys")
        self._values = derive_key(secret, b"cache values v1")

    def profile(self, clinic_id: str, patient_id: uuid.UUID) -> str:
        return f"{PREFIX}{{{clinic_id}}}:profile:{patient_id}"

    def summary(self, clinic_id: str, patient_id: uuid.UUID) -> str:
        return f"{PREFIX}{{{clinic_id}}}:summary:{patient_id}"

    def search_generation(self, clinic_id: str) -> str:
        return f"{PREFIX}{{{clinic_id}}}:search-generation"

    def search(self, clinic_id: str, criteria: bytes) -> str:
        digest = hmac.new(self._secret, clinic_id.encode() + b"\0" + criteria, hashlib.sha256)
        return f"{PREFIX}{{{clinic_id}}}:search:{digest.hexdigest()[:40]}"

    def sign(self, key: str, version: int, payload: bytes) -> bytes:
        """`payload` with its MAC in front, for storing at `version` under `key`."""
        return mac(self._values, self._covered(key, version) + payload) + payload

    def verified(self, key: str, stored: bytes) -> tuple[int, bytes] | None:
        """(version, payload) of a value stored under `key` whose MAC holds, else None.

        Also None for a tombstone (a bare version, which carries nothing to serve)."""
        parsed = split_version(stored)
        if parsed is None:
            return None
        version, signed = parsed
        payload = split_signed(self._values, self._covered(key, version), signed)
        return None if payload is None else (version, payload)

    @staticmethod
    def _covered(key: str, version: int) -> bytes:
        # What the MAC covers before the payload. The key names the clinic and the record;
        # a NUL cannot occur in it.
        return key.encode() + b"\0" + b"%d|" % version

    @staticmethod
    def fill_lock(key: str) -> str:
        return f"{key}:fill-lock"

    @staticmethod
    def refresh_lock(key: str) -> str:
        return f"{key}:refresh-lock"
