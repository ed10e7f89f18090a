"""The blacklist: rules with the checkouts each refused; adding and removing rules."""

from __future__ import annotations

from flask import flash, request, url_for

from ...services import blacklist
from . import bp, page, query_of, scope, submit


@bp.get("/blacklist")
def blacklist_page():
    """This mode's rules, newest first, each with how many checkouts it refused."""
    return page("blacklist.html", listing=blacklist.list_page(scope(), query_of(blacklist.LIST)),
                counts=blacklist.refusal_counts(scope()), types=blacklist.TYPES)


@bp.post("/blacklist")
def add_blacklist_rule():
    body = {"type": request.form.get("type", ""), "value": request.form.get("value", ""),
            "note": request.form.get("note", "").strip() or None}

    def action():
        rule = blacklist.create(scope(), body)
        flash(f"Checkouts by {rule['type'].replace('_', ' ')} {rule['value']} are refused "
              "from now on.", "info")
    return submit(action, url_for("dashboard.blacklist_page"))


@bp.get("/blacklist/<rule_id>")
def blacklist_rule_page(rule_id):
    """One rule and the latest checkouts it refused."""
    return page("blacklist_rule.html", rule=blacklist.get(scope(), rule_id),
                refusals=blacklist.refusals(scope(), rule_id))


@bp.post("/blacklist/<rule_id>/delete")
def delete_blacklist_rule(rule_id):
    def action():
        blacklist.delete(scope(), rule_id)
        flash(f"Removed {rule_id}.", "info")
    return submit(action, url_for("dashboard.blacklist_page"))
