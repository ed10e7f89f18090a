"""Sliding-window rate limits (docs/api.md, Rate limits), kept in memory.

Each bucket remembers the times of the requests it let through in the last window; a request
passes while fewer than `limit` are remembered. Unlike a refilling token bucket, no window of
60 seconds ever sees more than `limit` requests. One process serves a database, so memory is
the right place: limits reset on restart, which errs on the side of letting clients in.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

IPV6_CLIENT_PREFIX = 64


def client_of(address: str | None) -> str:
    """What a per-address limit counts a client by: an IPv4 address whole, an IPv6 address
    by its /64. A subscriber is usually handed a whole /64, so counting each IPv6 address
    on its own would let one client spread its requests over 2^64 buckets."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return str(address)
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(getattr(ip, "ipv4_mapped", None) or ip)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the oldest remembered request leaves the window (frees a slot).
    reset_seconds: int


class SlidingWindowLimiter:
    """Counts requests per key over a sliding window; safe across threads."""

    def __init__(self, window_seconds: int = 60, clock=time.monotonic):
        self.window = window_seconds
        self._clock = clock
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def hit(self, key: str, limit: int) -> Decision:
        """Count one request for `key` if it is under `limit`; say whether it passed."""
        now = self._clock()
        with self._lock:
            hits = self._expire(key, now)
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            return self._decision(hits, limit, now, allowed)

    def peek(self, key: str, limit: int) -> Decision:
        """Whether a request for `key` would pass, without counting one."""
        now = self._clock()
        with self._lock:
            hits = self._expire(key, now)
            return self._decision(hits, limit, now, len(hits) < limit)

    def _expire(self, key: str, now: float) -> deque:
        if now - self._last_sweep > self.window:
            self._sweep(now)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def _sweep(self, now: float) -> None:
        """Drop keys with nothing in the window, so memory stays bounded by active clients."""
        self._last_sweep = now
        idle = [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]
        for key in idle:
            del self._hits[key]

    def _decision(self, hits: deque, limit: int, now: float, allowed: bool) -> Decision:
        if hits:  # at least 1 s, at most the window, whatever the float rounding
            reset = min(max(math.ceil(hits[0] + self.window - now), 1), self.window)
        else:
            reset = 0
        return Decision(allowed, limit, max(limit - len(hits), 0), reset)
