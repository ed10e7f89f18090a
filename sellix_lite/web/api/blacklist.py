"""/v1/blacklist: rules naming buyers who can't check out (docs/api.md, Blacklist)."""

from __future__ import annotations

from ...services import blacklist
from . import bp
from .pipeline import operation, scope

TAG = "Blacklist"


@operation(bp, "GET", "/blacklist", summary="List blacklist rules", tag=TAG,
           ability="blacklist:read", query=blacklist.LIST,
           response="list:BlacklistRule")
def list_blacklist(query):
    """Returns this mode's rules, newest first."""
    return blacklist.list_page(scope(), query)


@operation(bp, "POST", "/blacklist", summary="Add a blacklist rule", tag=TAG,
           ability="blacklist:write", body=blacklist.CREATE, status=201,
           response="BlacklistRule")
def create_blacklist_rule(query, body):
    """Refuses, from now on, every checkout of this mode whose buyer the rule names."""
    return blacklist.create(scope(), body)


@operation(bp, "DELETE", "/blacklist/<rule_id>", summary="Remove a blacklist rule", tag=TAG,
           ability="blacklist:write",
           response="DeletedBlacklistRule")
def delete_blacklist_rule(rule_id, query, body):
    """Removes a rule and the record of the checkouts it refused."""
    return blacklist.delete(scope(), rule_id)
