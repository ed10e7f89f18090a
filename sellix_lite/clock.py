"""The one wall clock the app and the jobs read, and time as the API shows it: UTC,
ISO-8601 with `Z`, second precision.

Everything that decides by the date — expiry of invoices and links, retry schedules,
renewals, leases, timestamps written to the database or signed into webhooks and tokens —
reads `clock`, which tests set and move (`clock.set(moment)`, `clock.advance(seconds)`,
`clock.reset()`); in a running server it is the system's time.

Left on the system's clocks, on purpose:
- durations and deadlines measured with `time.monotonic()` / `perf_counter()`: the total
  deadline of an outbound call, request durations in the log, the rate limiter's windows.
  They measure real waiting on real sockets and threads, which a moved clock can't shorten.
- the scheduler's own timing (APScheduler runs jobs on real time; tests call jobs instead).
- ULIDs (`ids.py`): their time part only keeps ids increasing, which real time guarantees.
- Flask's dashboard session cookies, which Flask signs and ages itself.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# (second, its ISO text): requests within one second share one strftime.
_last_formatted = (-1, "")


class Clock:
    """The system's time, unless a test has set it: then it stands still where it was set
    until moved again."""

    def __init__(self):
        self._fixed: float | None = None
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch, like `time.time()`."""
        fixed = self._fixed  # one read: a test thread may move it meanwhile
        return time.time() if fixed is None else fixed

    def set(self, moment: datetime) -> None:
        """Stop the clock at `moment` (an aware datetime)."""
        self._fixed = moment.timestamp()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`, stopping it there if it was running."""
        with self._lock:
            self._fixed = self.time() + seconds

    def reset(self) -> None:
        """Follow the system's time again."""
        self._fixed = None


clock = Clock()


def utcnow() -> datetime:
    """The current time in UTC, truncated to whole seconds."""
    return datetime.fromtimestamp(int(clock.time()), UTC)


def iso(moment: datetime) -> str:
    """`2026-05-26T07:18:03Z`; years before 1000 padded to four digits as well, so that
    timestamps compare as text."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    """The current time as the API writes it (on every request, so without datetime)."""
    return _iso_of_second(int(clock.time()))


def iso_ago(*, seconds: int = 0, minutes: int = 0, hours: int = 0) -> str:
    """That long ago, as the API writes it (for comparisons in SQL)."""
    moment = clock.time() - seconds - 60 * minutes - 3600 * hours
    return time.strftime(ISO_FORMAT, time.gmtime(moment))


def _iso_of_second(second: int) -> str:
    global _last_formatted
    last = _last_formatted  # one read: another thread may replace it meanwhile
    if last[0] != second:
        last = _last_formatted = (second, time.strftime(ISO_FORMAT, time.gmtime(second)))
    return last[1]
