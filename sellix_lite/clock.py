"""Time as the API shows it: UTC, ISO-8601 with `Z`, second precision."""

from __future__ import annotations

import time
from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# (second, its ISO text): requests within one second share one strftime.
_last_formatted = (-1, "")


def utcnow() -> datetime:
    """The current time in UTC, truncated to whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """`2026-05-26T07:18:03Z`."""
    return moment.astimezone(UTC).strftime(ISO_FORMAT)


def now_iso() -> str:
    """The current time as the API writes it (on every request, so without datetime)."""
    return _iso_of_second(int(time.time()))


def iso_ago(*, seconds: int = 0, minutes: int = 0, hours: int = 0) -> str:
    """That long ago, as the API writes it (for comparisons in SQL)."""
    moment = time.time() - seconds - 60 * minutes - 3600 * hours
    return time.strftime(ISO_FORMAT, time.gmtime(moment))


def _iso_of_second(second: int) -> str:
    global _last_formatted
    last = _last_formatted  # one read: another thread may replace it meanwhile
    if last[0] != second:
        last = _last_formatted = (second, time.strftime(ISO_FORMAT, time.gmtime(second)))
    return last[1]
