"""Identifiers: a prefix and a ULID, e.g. `prod_01J2PVQR41...`.

ULIDs sort by creation time. Within one millisecond the random part is incremented rather
than drawn again, so ids made by this process are strictly increasing: newest-first lists
and keyset cursors can order by id alone.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
# Every pair of digits, indexed by the 10 bits they encode: a ULID is 13 lookups.
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_PAIR_SHIFTS = range(120, -10, -10)
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, 80-bit random part)
# Random bytes are drawn from the OS a page at a time: each draw is a system call during
# which other threads take the interpreter, and ids are made several per request.
_POOL_SIZE = 4000
_pool = b""
_pool_used = 0


def ulid() -> str:
    """A new monotonic ULID, 26 characters."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, rand = last_millis, last_random + 1
        else:
            rand = _random_80_bits()
        _last = (millis, rand)
    return _encode((millis << 80) | (rand & ((1 << 80) - 1)))


def _random_80_bits() -> int:
    """The next 10 bytes of the pool as a number; call with `_lock` held."""
    global _pool, _pool_used
    if _pool_used == len(_pool):
        _pool, _pool_used = os.urandom(_POOL_SIZE), 0
    _pool_used += 10
    return int.from_bytes(_pool[_pool_used - 10:_pool_used], "big")


def _forget_after_fork() -> None:
    """A forked child must not make the ids its parent will."""
    global _pool, _pool_used, _last
    _pool, _pool_used, _last = b"", 0, (0, 0)


os.register_at_fork(after_in_child=_forget_after_fork)


def new_id(prefix: str) -> str:
    """A new id such as `apik_01J...`."""
    return f"{prefix}_{ulid()}"


def _encode(number: int) -> str:
    """A 128-bit `number` as 26 Crockford base32 digits, most significant first.

    26 digits hold 130 bits, so the first digit carries only the top 3 bits (0-7).
    """
    return "".join([_PAIRS[(number >> shift) & 1023] for shift in _PAIR_SHIFTS])
