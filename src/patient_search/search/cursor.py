"""Opaque, tamper-evident cursors: the last hit's sort key, bound to the clinic and the query."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

from patient_search.errors import InvalidRequest
from patient_search.search.ranking import SortKey

_VERSION = 1


class CursorCodec:
    """Signs cursors with a key derived from the service secret."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"patient-search cursor\x00" + secret.encode()).digest()

    def _mac(self, clinic_id: str, fingerprint: str, payload: bytes) -> bytes:
        message = clinic_id.encode() + b"\x00" + fingerprint.encode() + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()[:16]

    def encode(self, clinic_id: str, fingerprint: str, after: SortKey) -> str:
        """A cursor that continues after `after`, valid only for this clinic and query."""
        payload = orjson.dumps([_VERSION, list(after)])
        token = payload + self._mac(clinic_id, fingerprint, payload)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, clinic_id: str, fingerprint: str, cursor: str) -> SortKey:
        """The sort key a cursor continues after; 400 when altered or not for this query."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except ValueError as exc:
            raise InvalidRequest("the cursor is not valid; start the search again") from exc
        payload, mac = raw[:-16], raw[-16:]
        if len(raw) <= 16 or not hmac.compare_digest(
            mac, self._mac(clinic_id, fingerprint, payload)
        ):
            raise InvalidRequest("the cursor is not valid for this search; start it again")
        try:
            version, key = orjson.loads(payload)
            if version != _VERSION:
                raise InvalidRequest("the cursor has expired; start the search again")
            rung, rank, term, part, last, first, birth, patient = key
        except (ValueError, TypeError) as exc:
            raise InvalidRequest("the cursor is not valid; start the search again") from exc
        return (
            int(rung),
            int(rank),
            str(term),
            int(part),
            str(last),
            str(first),
            str(birth),
            str(patient),
        )
