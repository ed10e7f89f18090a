"""Time as the API shows it: UTC, ISO-8601 with `Z`, second precision."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    """The current time in UTC, truncated to whole seconds."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """`2026-05-26T07:18:03Z`."""
    return moment.astimezone(timezone.utc).strftime(ISO_FORMAT)


def now_iso() -> str:
    """The current time as the API writes it (on every write path, so without datetime)."""
    return time.strftime(ISO_FORMAT, time.gmtime())


def iso_ago(**delta) -> str:
    """The time `delta` ago, as the API writes it (for comparisons in SQL)."""
    return time.strftime(ISO_FORMAT, time.gmtime(time.time() - timedelta(**delta).total_seconds()))
