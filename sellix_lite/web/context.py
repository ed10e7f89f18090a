"""What a request reaches through the app: the shared Runtime and its database connection.

Every module of the HTTP layer imports these accessors from here, never from the factory,
so the factory can import them all without a cycle.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from flask import current_app, g

from .. import db as storage
from ..config import Config
from ..ratelimit import SlidingWindowLimiter
from ..security import Signer
from ..services.links import Links
from ..services.scope import Scope
from ..services.webhook_sender import TestSendSlots


@dataclass
class Runtime:
    """What the app shares across requests: config, signer, limiters, this process's id."""

    config: Config
    signer: Signer
    boot_id: str = field(default_factory=lambda: secrets.token_hex(8))
    limiter: SlidingWindowLimiter = field(default_factory=SlidingWindowLimiter)
    # Limits counted over an hour (the portal's sign-in links per email).
    hourly_limiter: SlidingWindowLimiter = field(
        default_factory=lambda: SlidingWindowLimiter(window_seconds=3600))
    connections: storage.ThreadConnections = field(init=False)
    test_sends: TestSendSlots = field(init=False)
    links: Links = field(init=False)

    def __post_init__(self):
        self.connections = storage.ThreadConnections(self.config.database_path)
        self.test_sends = TestSendSlots(self.config)
        self.links = Links(self.config.public_url, self.signer,
                           self.config.shop.download_link_hours)

    def scope(self, db, mode: str) -> Scope:
        """What services get: `db` bound to `mode`, with this app's config and links."""
        return Scope(db, mode, self.config, self.links)


def runtime() -> Runtime:
    """The Runtime of the current app."""
    return current_app.extensions["sellix"]


def get_db():
    """This request's database connection: its thread's, handed back clean at teardown."""
    context = g._get_current_object()  # one lookup of the proxy, not three
    if "db" not in context:
        context.db = runtime().connections.acquire()
    return context.db


def release_db(_exc=None) -> None:
    """Hand this request's connection back to its thread (teardown)."""
    connection = g.pop("db", None)
    if connection is not None:
        runtime().connections.release(connection)
