"""The one retry policy of the work that calls out: webhook deliveries, dynamic deliveries
and emails.

Each is a row that is claimed for one attempt, called out for outside any transaction, and
settled: done, due again after the next delay of its schedule, or given up. A schedule of
N delays allows N + 1 attempts.

A claim is a lease. It expires LEASE_MARGIN_SECONDS after the call's deadline, so work
left by a sender that died without settling is taken up again, and it names the process
that holds it (its boot id), so a restart voids it at once where the table keeps an owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils

from ..clock import iso, utcnow

# Past the call's own deadline: the time to record its outcome, with room to spare.
LEASE_MARGIN_SECONDS = 60


def next_attempt(schedule: Sequence[int], attempts: int, now: datetime) -> datetime | None:
    """When to try again after `attempts` failed attempts, or None to give up."""
    if attempts > len(schedule):
        return None
    return now + timedelta(seconds=schedule[attempts - 1])


def lease_expiry(deadline_seconds: int, now: datetime) -> datetime:
    """When a claim made `now` for a call ending within `deadline_seconds` lapses."""
    return now + timedelta(seconds=deadline_seconds + LEASE_MARGIN_SECONDS)


@dataclass(frozen=True)
class Queue:
    """Where a table keeps its retry state.

    `until` is the lease's expiry column; without one, a claim pushes `due` past the
    deadline, so it lapses by itself. `owner` holds the claiming process's boot id; without
    one, a claim lasts until its expiry, restart or not.
    """

    table: str
    attempts: str = "attempts"
    due: str = "next_attempt_at"
    owner: str | None = "lease_owner"
    until: str | None = "lease_until"

    def claimable(self, now: str, boot_id: str | None = None) -> tuple[str, tuple]:
        """An SQL condition and its parameters: the row is due and no live claim holds it."""
        if self.until:
            return (f"{self.due} <= ? AND ({self.owner} IS NULL OR {self.owner} != ? "
                    f"OR {self.until} < ?)", (now, boot_id, now))
        if self.owner:
            return (f"({self.due} <= ? OR ({self.owner} IS NOT NULL AND {self.owner} != ?))",
                    (now, boot_id))
        return f"{self.due} <= ?", (now,)

    def held_here(self, now: str, boot_id: str) -> tuple[str, tuple]:
        """An SQL condition and its parameters: a live claim of this process holds the row."""
        if not self.owner:
            raise ValueError(f"{self.table} keeps no lease owner")
        if self.until:
            return f"{self.owner} = ? AND {self.until} >= ?", (boot_id, now)
        return f"{self.owner} = ? AND {self.due} > ?", (boot_id, now)

    def claim(self, db: sqlite_utils.Database, ids_sql: str, params: tuple, *,
              deadline_seconds: int, boot_id: str | None = None) -> list[dict]:
        """Lease the rows whose ids `ids_sql` selects for one more attempt each, to the
        process `boot_id` where the table keeps an owner; returns them as leased. Runs
        inside the caller's write transaction."""
        expiry = iso(lease_expiry(deadline_seconds, utcnow()))
        sets, values = [f"{self.attempts} = {self.attempts} + 1",
                        f"{self.until or self.due} = ?"], [expiry]
        if self.owner:
            sets.append(f"{self.owner} = ?")
            values.append(boot_id)
        return list(db.query(f"UPDATE {self.table} SET {', '.join(sets)} "
                             f"WHERE id IN ({ids_sql}) RETURNING *", (*values, *params)))
