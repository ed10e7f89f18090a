"""Sign-in, sign-out, the live/test switch and the overview."""

from __future__ import annotations

from flask import flash, redirect, request, session, url_for

from ...ratelimit import client_of
from ...services import admin, reports
from ..context import get_db, runtime
from ..html import check_csrf
from . import bp, mode, page, return_to, scope
from .charts import bar_chart

SIGN_INS_PER_MINUTE = 10


@bp.route("/login", methods=["GET", "POST"])
def sign_in():
    """The sign-in form; attempts are limited per address."""
    if request.method == "GET":
        return page_signin(None)
    check_csrf()
    decision = runtime().limiter.hit(f"sign-in:{client_of(request.remote_addr)}",
                                     SIGN_INS_PER_MINUTE)
    if not decision.allowed:
        return page_signin(f"Too many attempts. Try again in {decision.reset_seconds} "
                           "seconds."), 429, {"Retry-After": str(decision.reset_seconds)}
    if not admin.is_set(get_db()):
        return page_signin("No password is set yet: run `sellix-lite admin set-password`."), 403
    if not admin.verify(get_db(), request.form.get("password", "")):
        return page_signin("That password is not right."), 401
    session.clear()
    session.update(admin=True, mode="test", epoch=admin.session_epoch(get_db()))
    session.permanent = True
    return return_to(request.args.get("next", ""))


def page_signin(message):
    from flask import render_template

    return render_template("dashboard/login.html", message=message, mode="live")


@bp.post("/logout")
def sign_out():
    check_csrf()
    admin.end_sessions(get_db())
    session.clear()
    return redirect(url_for("dashboard.sign_in"), code=303)


@bp.post("/mode")
def switch_mode():
    """Show the other mode's objects."""
    session["mode"] = "live" if request.form.get("mode") == "live" else "test"
    flash(f"Now showing {session['mode']} mode.", "info")
    return return_to(request.form.get("back", ""))


@bp.get("/")
def overview():
    """Today's orders and revenue, the balance, webhooks in trouble, net sales per day over
    the last 30 days, the best-selling products and the products running out."""
    currency = runtime().config.shop.currency
    recent = reports.recent_sales(scope(), currency)
    return page("overview.html", figures=reports.overview(scope(), currency), current=mode(),
                recent=recent, chart=bar_chart(recent["days"]),
                low_stock=reports.low_stock(scope()))
