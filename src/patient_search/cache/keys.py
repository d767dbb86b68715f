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

PREFIX = "ps:"
# The MAC in front of a stored payload: HMAC-SHA256 truncated to 16 bytes, in hex.
MAC_CHARS = 32


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A key for one purpose, derived from the service secret (never the secret itself)."""
    return hmac.new(secret.encode(), b"patient-search " + purpose, hashlib.sha256).digest()


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
        return self._mac(key, b"%d|" % version, payload) + payload

    def verified(self, key: str, stored: bytes) -> tuple[int, bytes] | None:
        """(version, payload) of a value stored under `key` whose MAC holds, else None.

        Also None for a tombstone (a bare version, which carries nothing to serve)."""
        head, separator, signed = stored.partition(b"|")
        if not separator or not head.isdigit() or len(signed) <= MAC_CHARS:
            return None
        payload = signed[MAC_CHARS:]
        expected = self._mac(key, head + separator, payload)
        if not hmac.compare_digest(expected, signed[:MAC_CHARS]):
            return None
        return int(head), payload

    def _mac(self, key: str, version: bytes, payload: bytes) -> bytes:
        # The key names the clinic and the record; a NUL cannot occur in it.
        message = key.encode() + b"\0" + version + payload
        return hmac.digest(self._values, message, "sha256")[: MAC_CHARS // 2].hex().encode()

    @staticmethod
    def fill_lock(key: str) -> str:
        return f"{key}:fill-lock"

    @staticmethod
    def refresh_lock(key: str) -> str:
        return f"{key}:refresh-lock"
