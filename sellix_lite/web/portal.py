"""The buyer's portal (docs/storefront.md, Portal): `/portal` for live orders, `/test/portal`
for test ones.

A buyer types an email address and is told the same thing whatever it is; the address, if
it bought here, gets a sign-in link. The link sets a session cookie of this mode alone
(its own name, limited to the mode's portal path) and leads to the page of everything the
address bought. Every form carries the CSRF token; nothing needs JavaScript.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from ..errors import Unprocessable
from ..ratelimit import client_of
from ..services import portal
from ..services.scope import Scope
from .context import get_db, runtime
from .html import check_csrf

bp = Blueprint("portal", __name__)
PREFIXES = {"live": "/portal", "test": "/test/portal"}
COOKIES = {"live": "sellix_portal", "test": "sellix_portal_test"}
# What the page says after an action, by the `done` its redirect names.
NOTICES = {"deactivated": "The instance was deactivated.",
           "canceled": "The subscription won't renew: it ends with its current period."}
SIGNED_OUT = "Your session has ended. Ask for a new sign-in link below."


def _route(rule: str, view, methods=("GET",)) -> None:
    for mode, prefix in PREFIXES.items():
        bp.add_url_rule(prefix + rule, view.__name__, view, defaults={"mode": mode},
                        methods=list(methods))


@bp.after_request
def _never_cache(response):
    # The page shows keys and links: the browser must not keep it for the Back button.
    response.headers["Cache-Control"] = "no-store"
    return response


def _scope(mode: str) -> Scope:
    return runtime().scope(get_db(), mode)


def _signed_in(mode: str) -> str | None:
    """The email this browser is signed in as in `mode`'s portal, or None."""
    token = request.cookies.get(COOKIES[mode], "")
    return portal.email_of_session(runtime().signer, mode, token) if token else None


def page(mode: str):
    """Everything the signed-in buyer bought; the form asking for a link otherwise."""
    email = _signed_in(mode)
    if email is None:
        return _ask_form(mode)
    return render_template("portal/account.html", mode=mode, email=email,
                           notice=NOTICES.get(request.args.get("done", "")),
                           **portal.overview(_scope(mode), email))


def ask_for_link(mode: str):
    """Email a sign-in link to an address that bought here; answer the same for any."""
    check_csrf()
    limit = runtime().config.limits.checkouts_per_minute_per_ip
    decision = runtime().limiter.hit(f"portal:{client_of(request.remote_addr)}", limit)
    if not decision.allowed:
        message = (f"You've asked for several links in a short time. Please wait "
                   f"{decision.reset_seconds} seconds and try again.")
        page, status = _ask_form(mode, message, 429)
        return page, status, {"Retry-After": str(decision.reset_seconds)}
    try:
        email = portal.requested_email({"email": request.form.get("email", "")})
    except Unprocessable:
        return _ask_form(mode, "Please enter a valid email address.", 422)
    portal.send_link(_scope(mode), email, runtime().hourly_limiter)
    return render_template("portal/sent.html", mode=mode, email=email)


def sign_in(mode: str):
    """Open the session a sign-in link grants, then show the buyer's page."""
    email = portal.email_of_link(runtime().signer, mode, request.args.get("t", ""))
    if email is None:
        return _ask_form(mode, "This sign-in link is not valid or has expired. Ask for a "
                               "new one below.", 403)
    response = redirect(url_for("portal.page", mode=mode), code=303)
    response.set_cookie(COOKIES[mode], portal.session_token(runtime().signer, mode, email),
                        max_age=portal.SESSION_MAX_AGE, path=PREFIXES[mode], httponly=True,
                        samesite="Lax", secure=_secure())
    return response


def sign_out(mode: str):
    """End this browser's session in `mode`'s portal."""
    check_csrf()
    response = redirect(url_for("portal.page", mode=mode), code=303)
    response.delete_cookie(COOKIES[mode], path=PREFIXES[mode], httponly=True,
                           samesite="Lax", secure=_secure())
    return response


def deactivate_instance(mode: str, license_id: str, instance_id: str):
    """Free an activation of one of the buyer's licenses."""
    portal.deactivate_instance(_scope(mode), _require_session(mode), license_id, instance_id)
    return _done(mode, "deactivated")


def cancel_renewal(mode: str, subscription_id: str):
    """Cancel one of the buyer's subscriptions at the end of its period."""
    portal.cancel_renewal(_scope(mode), _require_session(mode), subscription_id)
    return _done(mode, "canceled")


def _require_session(mode: str) -> str:
    """The signed-in email of a form post (its CSRF token checked); 403 without one."""
    check_csrf()
    email = _signed_in(mode)
    if email is None:
        abort(403, SIGNED_OUT)
    return email


def _done(mode: str, notice: str):
    return redirect(url_for("portal.page", mode=mode, done=notice), code=303)


def _secure() -> bool:
    """Behind TLS the cookie never travels over plain HTTP."""
    return request.is_secure or runtime().config.public_url.startswith("https://")


def _ask_form(mode: str, message: str | None = None, status: int = 200):
    return render_template("portal/ask.html", mode=mode, message=message), status


_route("", page)
_route("", ask_for_link, methods=("POST",))
_route("/sign-in", sign_in)
_route("/sign-out", sign_out, methods=("POST",))
_route("/licenses/<license_id>/instances/<instance_id>/deactivate", deactivate_instance,
       methods=("POST",))
_route("/subscriptions/<subscription_id>/cancel", cancel_renewal, methods=("POST",))
