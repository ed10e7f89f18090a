"""The public license checks (docs/api.md, Licenses): what the merchant's own software asks
about a key from a buyer's machine, with no API key.

The key alone finds the license, live mode first, then test mode; the caller learns its
public view, never the buyer's email or order. Activation checks the license and its limit
and adds the instance in one write transaction, so concurrent activations never pass the
limit. Activating with a fingerprint already seen returns that instance: sent on every
start, it makes activation idempotent. Activation and a valid validation answer with a
signed lease (`leases.issue`), made after the transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlite_utils

from ..clock import now_iso
from ..db import query_one, write_txn
from ..errors import NotFound, invalid
from ..ids import new_id
from ..validation import PLAIN_TEXT, PLAIN_TEXT_HINT, Schema, String
from . import leases, licenses
from .scope import Scope

# Why a license is not valid, as `validate` says it.
REASONS = ("disabled", "expired", "unknown_instance")
LIMIT_REACHED = "activation limit reached"
_KEY = dict(min_length=1, max_length=1024, strip=True, required=True,
            description="The license key the buyer received.", example="AAAA-BBBB-CCCC")
_INSTANCE_ID = dict(min_length=1, max_length=100, example="lin_01J2PVQR41XSK3VY7P6M5B8D2C")

ACTIVATE = Schema(
    license_key=String(**_KEY),
    instance_name=String(min_length=1, max_length=100, strip=True, required=True,
                         pattern=PLAIN_TEXT, pattern_hint=PLAIN_TEXT_HINT,
                         description="A name for the machine or install, shown to the "
                                     "merchant.", example="Ada's laptop"),
    fingerprint=String(min_length=1, max_length=200, strip=True, pattern=PLAIN_TEXT,
                       pattern_hint=PLAIN_TEXT_HINT,
                       description="A stable id of the machine: activating again with the "
                                   "same one returns the same instance.",
                       example="4c1f0e9b7d2a"),
)
VALIDATE = Schema(
    license_key=String(**_KEY),
    instance_id=String(**_INSTANCE_ID, description="The instance activation returned; "
                                                   "checks it still holds the license."),
)
DEACTIVATE = Schema(
    license_key=String(**_KEY),
    instance_id=String(**_INSTANCE_ID, required=True,
                       description="The instance to remove, freeing its activation."),
)
ScopeOf = Callable[[str], Scope]


def find(db: sqlite_utils.Database, license_key: str) -> dict:
    """The license of `license_key`: live mode first, then test mode (the newest of a
    mode if a key was delivered twice); 404 if there is none."""
    row = query_one(db, "SELECT * FROM licenses WHERE key = ? "
                        "ORDER BY mode = 'live' DESC, id DESC LIMIT 1", (license_key,))
    if row is None:
        raise NotFound("no license has this key")
    return row


def public_view(row: dict) -> dict:
    """What the caller of a public check may see of a license."""
    shown = {key: row[key] for key in ("id", "status", "product_id", "mode",
                                       "activation_limit", "activations", "expires_at")}
    shown["status"] = licenses.status_of(row)
    return shown


def activate(db: sqlite_utils.Database, scope_of: ScopeOf, body: dict) -> tuple[dict, bool]:
    """Activate the license on an instance; (the answer, whether the instance is new).

    A disabled or expired license, or one at its limit, is refused (422 on
    `license_key`); the same fingerprint again returns its instance, which holds its
    activation already, whatever the limit has become.
    """
    params = ACTIVATE.validate(body)
    with _locked_license(db, scope_of, params["license_key"]) as (scope, row):
        _refuse_unless_active(row)
        instance = _instance_with_fingerprint(scope.db, row, params.get("fingerprint"))
        created = instance is None
        if created:
            _refuse_at_limit(row)
            instance = _add_instance(scope.db, row, params)
            row = licenses.count_activation(scope.db, row, instance, +1, "license.activated")
    return {"activated": True, "license": public_view(row),
            "instance": licenses.render_instance(instance),
            "lease": leases.issue(scope, row, instance["id"])}, created


def validate(db: sqlite_utils.Database, scope_of: ScopeOf, body: dict) -> dict:
    """Whether the license (and the instance, when named) is good now, and why not; a
    lease when it is."""
    params = VALIDATE.validate(body)
    row = find(db, params["license_key"])
    answer = {"valid": False, "reason": None, "license": public_view(row)}
    instance = None
    if "instance_id" in params:
        instance = licenses.find_instance(db, row, params["instance_id"])
        if instance is not None:
            answer["instance"] = licenses.render_instance(instance)
    status = answer["license"]["status"]
    if status != "active":
        answer["reason"] = status
    elif "instance_id" in params and instance is None:
        answer["reason"] = "unknown_instance"
    else:
        answer["valid"] = True
        answer["lease"] = leases.issue(scope_of(row["mode"]), row,
                                       instance["id"] if instance else None)
    return answer


def deactivate(db: sqlite_utils.Database, scope_of: ScopeOf, body: dict) -> dict:
    """Remove an instance of the license, freeing its activation (whatever the license's
    status: freeing a slot harms nobody)."""
    params = DEACTIVATE.validate(body)
    with _locked_license(db, scope_of, params["license_key"]) as (scope, row):
        instance = licenses.require_instance(scope.db, row, params["instance_id"])
        licenses.remove_instance(scope.db, row, instance)
    return {"deactivated": True}


@contextmanager
def _locked_license(db: sqlite_utils.Database, scope_of: ScopeOf,
                    license_key: str) -> Iterator[tuple[Scope, dict]]:
    """A write transaction in the mode of the key's license, and the license as it is
    under the write lock."""
    found = find(db, license_key)
    scope = scope_of(found["mode"])
    with write_txn(scope.db):
        yield scope, scope.require("licenses", found["id"], "license")


def _refuse_unless_active(row: dict) -> None:
    status = licenses.status_of(row)
    if status != "active":
        raise invalid("license_key", f"the license is {status}")


def _refuse_at_limit(row: dict) -> None:
    limit = row["activation_limit"]
    if limit is not None and row["activations"] >= limit:
        raise invalid("license_key", LIMIT_REACHED)


def _instance_with_fingerprint(db: sqlite_utils.Database, row: dict,
                               fingerprint: str | None) -> dict | None:
    if fingerprint is None:
        return None
    return query_one(db, "SELECT * FROM license_instances "
                         "WHERE license_id = ? AND fingerprint = ?", (row["id"], fingerprint))


def _add_instance(db: sqlite_utils.Database, row: dict, params: dict) -> dict:
    instance = {"id": new_id("lin"), "license_id": row["id"], "mode": row["mode"],
                "name": params["instance_name"], "fingerprint": params.get("fingerprint"),
                "created_at": now_iso()}
    db.execute("INSERT INTO license_instances (id, license_id, mode, name, fingerprint, "
               "created_at) VALUES (:id, :license_id, :mode, :name, :fingerprint, "
               ":created_at)", instance)
    return instance
