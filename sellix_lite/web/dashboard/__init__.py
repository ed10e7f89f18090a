"""The merchant dashboard (docs/dashboard.md): the same services as /v1, in the browser.

Sign-in uses the password set with `sellix-lite admin set-password`; the session is Flask's
signed cookie (HttpOnly, SameSite=Lax, expiring). Every form carries the CSRF token and a
one-time form id: a form sent twice (a double click, a reload) runs once, through the same
idempotency records the API uses. Errors are shown with the messages the API returns.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from ...errors import ApiError
from ...services import admin, idempotency
from ...services.scope import Scope
from ..context import get_db, runtime
from ..html import check_csrf
from ..surfaces import surface_of

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
SESSION_HOURS = 12
FORM_PRINCIPAL = "dashboard"  # whose idempotency records the dashboard's forms are


@bp.before_request
def _require_sign_in():
    if request.endpoint in ("dashboard.sign_in", "dashboard.sign_out"):
        return None
    if not session.get("admin") or session.get("epoch") != admin.session_epoch(get_db()):
        session.clear()
        return redirect(url_for("dashboard.sign_in", next=request.path))
    g.mode = session.get("mode", "test")
    if request.method == "POST":
        check_csrf()
    return None


@bp.after_request
def _never_cache(response):
    # Pages may show a secret once; the browser must not keep them for the Back button.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def form_id() -> str:
    """A one-time id for a form: the same form sent twice runs once."""
    return secrets.token_urlsafe(16)


def mode() -> str:
    return g.mode


def scope() -> Scope:
    """The database bound to the mode the dashboard shows."""
    return runtime().scope(get_db(), g.mode)


def page(template: str, **context):
    return render_template(f"dashboard/{template}", mode=g.mode, **context)


def submit(action: Callable[[], str | None], back: str):
    """Run a form's action once per form id; redirect to its result or back with the error.

    `action` returns the URL to go to (or None for `back`).
    """
    return _once(lambda: action() or back, lambda target: target, back,
                 lambda target: redirect(target, code=303))


def submit_and_show(action: Callable[[], dict], show: Callable[[dict], object], back: str):
    """Like `submit`, for an action whose result is shown once (a new secret): the page
    shows it right away; the same form sent again only returns to `back`."""
    return _once(action, lambda result: back, back, show)


def _once(action, target_of, back: str, respond):
    key = request.form.get("form_id", "")
    fingerprint = idempotency.fingerprint(request.method, request.path,
                                          repr(sorted(request.form.items())).encode())
    try:
        idempotency.check_key(key)
        result, replayed = idempotency.run_once(
            get_db(), FORM_PRINCIPAL, key, fingerprint, runtime().boot_id, action,
            lambda result: idempotency.StoredResponse(303, {}, target_of(result).encode()))
    except ApiError as error:
        flash_error(error)
        return redirect(back, code=303)
    if replayed:  # a form sent again lands where the first one did
        return redirect(result.body.decode(), code=303)
    return respond(result)


def return_to(target: str):
    """A redirect to `target`, a dashboard path sent with a form or link, else to the
    overview."""
    return redirect(dashboard_path(target, url_for("dashboard.overview")), code=303)


def back_or(default: str) -> str:
    """Where a form shown on several pages returns: its `back` field, else `default`."""
    return dashboard_path(request.form.get("back", ""), default)


def dashboard_path(target: str, default: str) -> str:
    """`target` if it is a dashboard path, else `default`. A line break (or any control
    character) in it is a 400: it would end the `Location` header."""
    if any(ord(char) < 32 or char == "\x7f" for char in target):
        abort(400, "The address to return to is not valid.")
    return target if surface_of(target.partition("?")[0]) == "dashboard" else default


def query_of(schema, limit: int = 50) -> dict:
    """The page's query string as the API would read it; bad filters are reported and
    dropped."""
    args = {k: v for k, v in request.args.items() if v}
    try:
        return schema.validate({"limit": str(limit), **args}, from_query=True)
    except ApiError as error:
        flash_error(error)
        return schema.validate({"limit": str(limit)}, from_query=True)


@bp.app_template_global()
def older_url(listing: dict) -> str:
    """The page after `listing`: this page's address and filters, with the next cursor."""
    args = {**request.view_args, **request.args.to_dict(), "cursor": listing["next_cursor"]}
    return url_for(request.endpoint, **args)


def flash_error(error: ApiError) -> None:
    """The API's message for an error, with its per-field details."""
    details = "; ".join(f"{field}: {message}" for field, message in (error.errors or {}).items())
    flash(f"{error.detail}{' — ' + details if details else ''}", "error")


def install(app) -> None:
    """Session settings and the dashboard's routes."""
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME="sellix_session",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS))
    from . import (  # noqa: F401  (they register routes)
        blacklist,
        catalog,
        coupons,
        developers,
        licensing,
        reports,
        sales,
        signin,
        subscriptions,
    )

    app.register_blueprint(bp)
