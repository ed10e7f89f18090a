"""The mode rule (docs/api.md, Modes) as one object every query of a mode's objects goes through.

A Scope is a database connection bound to one mode: `get`, `require` and `page` add
`mode = ?` to each query, so an object of the other mode is simply not found. It also
carries what services read besides the database: the configuration and the links that
leave the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

import sqlite_utils

from ..config import Config
from ..db import query_one
from ..errors import NotFound, Unprocessable
from ..security import BadToken, Signer
from ..validation import Integer, Schema, String
from .links import Links

MODES = ("live", "test")
CURSOR_NAMESPACE = "list-cursor"

LIST_QUERY = {
    "limit": Integer(minimum=1, maximum=100, default=25,
                     description="How many items to return per page."),
    "cursor": String(min_length=1, max_length=512,
                     description="Opaque cursor from a previous page's `next_cursor`."),
}


def list_query(**filters) -> Schema:
    """The query schema of a list endpoint: `limit`, `cursor` and its own filters."""
    return Schema(**LIST_QUERY, **filters)


@dataclass(frozen=True)
class Scope:
    db: sqlite_utils.Database
    mode: str
    config: Config
    links: Links

    @classmethod
    def outside_requests(cls, db: sqlite_utils.Database, mode: str, config: Config,
                         secret_key: str) -> Scope:
        """A scope for code that runs outside a request: scripts and benchmarks."""
        return cls(db, mode, config, Links.for_config(config, secret_key))

    @property
    def signer(self) -> Signer:
        return self.links.signer

    def get(self, table: str, object_id: str) -> dict | None:
        """The row of this mode with that id, or None."""
        return query_one(self.db, f"SELECT * FROM {table} WHERE id = ? AND mode = ?",
                         (object_id, self.mode))

    def require(self, table: str, object_id: str, what: str) -> dict:
        """The row of this mode with that id, or 404 naming `what`."""
        row = self.get(table, object_id)
        if row is None:
            raise NotFound(f"no {what} {object_id}")
        return row

    def page(self, table: str, query: dict, render: Callable[[dict], dict], *,
             where: str = "", params: tuple = (), select: str = "*") -> dict:
        """One page of a list, newest first, in the list envelope (docs/api.md, Pagination).

        Keyset pagination on the time-ordered id: a page never shifts when rows are added,
        and its cost does not grow with the table.
        """
        limit = query["limit"]
        conditions, args = ["mode = ?"], [self.mode]
        if where:
            conditions.append(where)
            args.extend(params)
        if "cursor" in query:
            conditions.append("id < ?")
            args.append(self._decode_cursor(query["cursor"], table))
        sql = (f"SELECT {select} FROM {table} WHERE {' AND '.join(conditions)} "
               f"ORDER BY id DESC LIMIT ?")
        rows = self.db.query_in_one_step(sql, (*args, limit + 1))
        rows.sort(key=itemgetter("id"), reverse=True)  # the order the SELECT asks for
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = self.cursor_after(rows[-1]["id"], table) if has_more else None
        return {"object": "list", "data": [render(row) for row in rows],
                "has_more": has_more, "next_cursor": next_cursor}

    def cursor_after(self, last_id: str, table: str) -> str:
        """The cursor of the page of `table` that starts after the row `last_id`."""
        return self.signer.sign_text(f"{self.mode}:{table}:{last_id}", CURSOR_NAMESPACE)

    def _decode_cursor(self, cursor: str, table: str) -> str:
        try:
            text = self.signer.unsign_text(cursor, CURSOR_NAMESPACE)
        except BadToken:
            raise Unprocessable(errors={"cursor": "is not a valid cursor"}) from None
        mode, list_name, after = (text.split(":", 2) + ["", ""])[:3]
        if mode != self.mode or list_name != table or not after:
            raise Unprocessable(errors={"cursor": "belongs to another list"})
        return after
