"""Cache key names: every key carries its clinic; no key carries patient data in clear.

The clinic sits in braces (a Redis Cluster hash tag), so one clinic's keys — its search
generation and the pages filed under it — live on one shard.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

PREFIX = "ps:"


class CacheKeys:
    """Builds the keys; search criteria are keyed by an HMAC, not a plain hash.

    A plain hash of "smith 03/14/1975" could be confirmed by hashing guesses; an HMAC
    under the service's secret cannot.
    """

    def __init__(self, secret: str) -> None:
        self._secret = hmac.new(secret.encode(), b"patient-search cache keys", "sha256").digest()

    def profile(self, clinic_id: str, patient_id: uuid.UUID) -> str:
        return f"{PREFIX}{{{clinic_id}}}:profile:{patient_id}"

    def summary(self, clinic_id: str, patient_id: uuid.UUID) -> str:
        return f"{PREFIX}{{{clinic_id}}}:summary:{patient_id}"

    def search_generation(self, clinic_id: str) -> str:
        return f"{PREFIX}{{{clinic_id}}}:search-generation"

    def search(self, clinic_id: str, criteria: bytes) -> str:
        digest = hmac.new(self._secret, clinic_id.encode() + b"\0" + criteria, hashlib.sha256)
        return f"{PREFIX}{{{clinic_id}}}:search:{digest.hexdigest()[:40]}"

    @staticmethod
    def fill_lock(key: str) -> str:
        return f"{key}:fill-lock"

    @staticmethod
    def refresh_lock(key: str) -> str:
        return f"{key}:refresh-lock"
