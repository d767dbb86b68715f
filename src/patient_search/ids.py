"""Time-ordered UUIDv7 identifiers (RFC 9562); Python 3.11's uuid module has no uuid7."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    """A random UUID whose leading 48 bits are the Unix time in milliseconds.

    New rows land at the right-hand edge of the primary-key B-tree instead of at random
    pages, which keeps bulk inserts and the buffer cache efficient.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64 & (0xFFF << 64)  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 random bits
    return uuid.UUID(int=value)
