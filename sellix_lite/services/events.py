"""The events outbox (CONTRACT §12): every state change writes its event in the same
transaction, so an event exists exactly when its change does, whatever crashes.

An event is `{"id", "type", "created_at", "mode", "data": {"object": ..., 
"previous_attributes"?: ...}}`: `data.object` is the object after the change and, for
`*.updated` events, `data.previous_attributes` holds the old values of the fields that
changed.
"""

from __future__ import annotations

import json

import sqlite_utils

from ..clock import now_iso
from ..ids import new_id


class OutsideTransaction(RuntimeError):
    """An event written outside the transaction of its change could be lost or orphaned."""


def emit(db: sqlite_utils.Database, mode: str, event_type: str, obj: dict,
         previous_attributes: dict | None = None) -> str:
    """Write an event into the outbox; must run inside the change's write transaction."""
    if not db.conn.in_transaction:
        raise OutsideTransaction(f"{event_type} must be written inside its change's transaction")
    data = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    event_id = new_id("evt")
    db.execute("INSERT INTO events (id, mode, type, data, created_at) VALUES (?, ?, ?, ?, ?)",
               (event_id, mode, event_type, json.dumps(data), now_iso()))
    return event_id


def render(row: dict) -> dict:
    """The public event object."""
    return {"id": row["id"], "type": row["type"], "created_at": row["created_at"],
            "mode": row["mode"], "data": json.loads(row["data"])}
