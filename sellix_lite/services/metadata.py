"""Metadata (docs/api.md, Metadata): the merchant's own key-value pairs on an object, changed
by a `PATCH` that merges into what is kept.

The rules of a value live in `validation.Metadata`; this module applies a change to a row.
"""

from __future__ import annotations

import json

from .. import db as storage
from ..validation import Metadata, Schema, merge_metadata
from .scope import Scope

# The body of the `PATCH` of objects whose metadata is all a client may change.
UPDATE = Schema(metadata=Metadata(patch=True))


def update(scope: Scope, table: str, row: dict, change: dict, **columns) -> dict | None:
    """Merge `change` into the row's metadata and write it, with `columns`, inside the
    caller's write transaction; returns the metadata as it was, or None (and writes
    nothing) when the merge leaves it as it was."""
    kept = json.loads(row["metadata"])
    merged = merge_metadata(kept, change)
    if merged == kept:
        return None
    storage.update(scope.db, table, row["id"], {"metadata": json.dumps(merged), **columns})
    return kept
