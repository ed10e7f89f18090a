"""Identifiers: a prefix and a ULID, e.g. `prod_01J2PVQR41...`.

ULIDs sort by creation time. Within one millisecond the random part is incremented rather
than drawn again, so ids made by this process are strictly increasing: newest-first lists
and keyset cursors can order by id alone.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET)
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, 80-bit random part)


def ulid() -> str:
    """A new monotonic ULID, 26 characters."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, rand = last_millis, last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last = (millis, rand)
    return _encode(millis, 10) + _encode(rand & ((1 << 80) - 1), 16)


def new_id(prefix: str) -> str:
    """A new id such as `apik_01J...`."""
    return f"{prefix}_{ulid()}"


def _encode(number: int, length: int) -> str:
    """`number` as `length` Crockford base32 digits (most significant first).

    b32encode of 20 bytes gives 32 digits whose last `length` hold the number's low bits;
    a translation table turns RFC 4648's digits into Crockford's.
    """
    digits = base64.b32encode(number.to_bytes(20, "big")).decode()[-length:]
    return digits.translate(_TO_CROCKFORD)
