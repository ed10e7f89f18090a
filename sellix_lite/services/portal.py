"""The buyer's portal (docs/storefront.md, Portal): one place for everything an email
address bought in one mode, opened by a link sent to that address.

There are no passwords: whoever reads the mailbox is the buyer. The sign-in link and the
session are both timed tokens carrying the mode and the email, in namespaces of their own,
so neither can stand in for the other or for any other signed value: the link is good for
30 minutes, the session for 24 hours. The portal's answer to an email address never says
whether it bought here; only the mailbox learns that.
"""

from __future__ import annotations

from ..db import write_txn
from ..errors import NotFound
from ..ratelimit import SlidingWindowLimiter
from ..security import BadToken, Signer
from ..validation import Email, Schema
from . import emails, licenses, orders, subscriptions
from .scope import Scope

LINK_NAMESPACE = "portal-link"
SESSION_NAMESPACE = "portal-session"
LINK_MAX_AGE = 30 * 60
SESSION_MAX_AGE = 24 * 3600
LINKS_PER_EMAIL_PER_HOUR = 5
# A page shows this many of a buyer's newest orders, licenses and subscriptions.
SHOWN = 100
ASK = Schema(email=Email(required=True, description="Where the sign-in link goes."))


def requested_email(body: dict) -> str:
    """The address a buyer typed, in lower case as orders keep it; 422 if not plain."""
    return ASK.validate(body)["email"].lower()


def send_link(scope: Scope, email: str, hourly: SlidingWindowLimiter) -> bool:
    """Queue an email with a sign-in link if `email` has orders in this mode and has had
    fewer than five links this hour (counted in `hourly`, an hour's window); returns
    whether one was queued. The caller answers the same either way."""
    if not _has_orders(scope, email):
        return False
    if not hourly.hit(f"portal-link:{email}", LINKS_PER_EMAIL_PER_HOUR).allowed:
        return False
    shop = scope.config.shop.name
    body = (f"Open this link to see your orders, keys, licenses and subscriptions at "
            f"{shop}:\n\n  {sign_in_url(scope, email)}\n\n"
            f"The link works for 30 minutes. If you didn't ask for it, ignore this email.\n")
    with write_txn(scope.db):
        emails.queue(scope.db, mode=scope.mode, kind="portal_link", to=email,
                     subject=f"Your sign-in link for {shop}", body=body)
    return True


def _has_orders(scope: Scope, email: str) -> bool:
    return scope.db.execute("SELECT 1 FROM orders WHERE mode = ? AND customer_email = ? "
                            "LIMIT 1", (scope.mode, email)).fetchone() is not None


def sign_in_url(scope: Scope, email: str) -> str:
    """The link that signs `email` in to this mode's portal for 30 minutes."""
    token = scope.signer.sign_timed({"mode": scope.mode, "email": email}, LINK_NAMESPACE)
    return f"{scope.links.portal_url(scope.mode)}/sign-in?t={token}"


def email_of_link(signer: Signer, mode: str, token: str) -> str | None:
    """The email a sign-in link of `mode` is for; None if forged, of the other mode or
    older than 30 minutes."""
    return _email_of(signer, token, LINK_NAMESPACE, LINK_MAX_AGE, mode)


def session_token(signer: Signer, mode: str, email: str) -> str:
    """The value of the portal's session cookie for `email` in `mode`."""
    return signer.sign_timed({"mode": mode, "email": email}, SESSION_NAMESPACE)


def email_of_session(signer: Signer, mode: str, token: str) -> str | None:
    """The email a session cookie of `mode` signs in; None if forged, of the other mode or
    older than 24 hours."""
    return _email_of(signer, token, SESSION_NAMESPACE, SESSION_MAX_AGE, mode)


def _email_of(signer: Signer, token: str, namespace: str, max_age: int,
              mode: str) -> str | None:
    try:
        value = signer.unsign_timed(token, namespace, max_age)
    except BadToken:
        return None
    if not isinstance(value, dict) or value.get("mode") != mode:
        return None
    email = value.get("email")
    return email if isinstance(email, str) else None


def overview(scope: Scope, email: str) -> dict:
    """What `email` bought in this mode, newest first: orders (with their goods, fresh
    download links and the link to their page), licenses with their instances, and
    subscriptions."""
    return {"orders": _orders(scope, email), "licenses": _licenses(scope, email),
            "subscriptions": _subscriptions(scope, email)}


def _orders(scope: Scope, email: str) -> list[dict]:
    rows = scope.db.query("SELECT * FROM orders WHERE mode = ? AND customer_email = ? "
                          "ORDER BY id DESC LIMIT ?", (scope.mode, email, SHOWN))
    return [{**orders.present(scope.db, row, scope.links),
             "page_url": scope.links.order_url(row["id"], scope.mode)} for row in rows]


def _licenses(scope: Scope, email: str) -> list[dict]:
    rows = scope.db.query(
        "SELECT l.id, p.name FROM licenses l JOIN products p ON p.id = l.product_id "
        "WHERE l.mode = ? AND l.customer_email = ? ORDER BY l.id DESC LIMIT ?",
        (scope.mode, email, SHOWN))
    return [{**licenses.get(scope, row["id"]), "product_name": row["name"]} for row in rows]


def _subscriptions(scope: Scope, email: str) -> list[dict]:
    rows = scope.db.query(
        "SELECT s.*, p.name AS product_name FROM subscriptions s "
        "JOIN products p ON p.id = s.product_id "
        "WHERE s.mode = ? AND s.customer_email = ? ORDER BY s.id DESC LIMIT ?",
        (scope.mode, email, SHOWN))
    return [{**subscriptions.render(row), "product_name": row["product_name"]} for row in rows]


def deactivate_instance(scope: Scope, email: str, license_id: str, instance_id: str) -> dict:
    """Remove an instance of one of `email`'s licenses; 404 for anyone else's."""
    _owned(scope, "licenses", license_id, email, "license")
    return licenses.delete_instance(scope, license_id, instance_id)


def cancel_renewal(scope: Scope, email: str, subscription_id: str) -> dict:
    """Stop one of `email`'s subscriptions from renewing: it ends with its current period
    (404 for anyone else's)."""
    _owned(scope, "subscriptions", subscription_id, email, "subscription")
    return subscriptions.cancel(scope, subscription_id, {"at_period_end": True})


def _owned(scope: Scope, table: str, object_id: str, email: str, what: str) -> dict:
    """The row of this mode with that id if `email` owns it; otherwise 404, the same answer
    as for an id that doesn't exist."""
    row = scope.get(table, object_id)
    if row is None or row["customer_email"] != email:
        raise NotFound(f"no {what} {object_id}")
    return row
