"""MACs of what the service reads back from a store it does not trust (Redis).

Keys are derived from the service secret, one per purpose, never the secret itself; a MAC
is HMAC-SHA256 truncated to 16 bytes, in hex, so it sits in front of the bytes it covers.
"""

from __future__ import annotations

import hashlib
import hmac

MAC_CHARS = 32


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A key for one purpose, derived from the service secret."""
    return hmac.new(secret.encode(), b"patient-search " + purpose, hashlib.sha256).digest()


def mac(key: bytes, message: bytes) -> bytes:
    """The MAC of `message` under `key`, MAC_CHARS hex characters."""
    return hmac.digest(key, message, "sha256")[: MAC_CHARS // 2].hex().encode()


def split_signed(key: bytes, message_prefix: bytes, signed: bytes) -> bytes | None:
    """The bytes after the MAC in `signed` if the MAC of `message_prefix` + those bytes holds
    under `key`, else None."""
    if len(signed) <= MAC_CHARS:
        return None
    payload = signed[MAC_CHARS:]
    if not hmac.compare_digest(mac(key, message_prefix + payload), signed[:MAC_CHARS]):
        return None
    return payload
