"""Time as the API shows it: UTC, ISO-8601 with `Z`, second precision."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utcnow() -> datetime:
    """The current time in UTC, truncated to whole seconds."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """`2026-05-26T07:18:03Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    """The current time as the API writes it."""
    return iso(utcnow())


def iso_ago(**delta) -> str:
    """The time `delta` ago, as the API writes it (for comparisons in SQL)."""
    return iso(utcnow() - timedelta(**delta))
