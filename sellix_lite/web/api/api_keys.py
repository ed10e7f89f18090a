"""/v1/api-keys: list, mint and revoke API keys (docs/api.md, API keys)."""

from ...services import api_keys
from . import bp
from .pipeline import caller, operation, scope

TAG = "API keys"


@operation(bp, "GET", "/api-keys", summary="List API keys", tag=TAG,
           ability="api_keys:read", query=api_keys.LIST,
           response="list:ApiKey")
def list_api_keys(query):
    """Keys of this mode, newest first, revoked ones included; secrets are never shown."""
    return api_keys.list_page(scope(), query)


@operation(bp, "POST", "/api-keys", summary="Mint a key", tag=TAG,
           ability="api_keys:write", body=api_keys.MINT, status=201,
           secret_field="secret",
           response="NewApiKey")
def mint_api_key(query, body):
    """Mints a key whose abilities are a subset of this key's; `secret` is shown once."""
    return api_keys.mint_for(scope(), caller(), body)


@operation(bp, "DELETE", "/api-keys/<key_id>", summary="Revoke a key", tag=TAG,
           ability="api_keys:write",
           response="RevokedApiKey")
def revoke_api_key(key_id, query, body):
    """Revokes a key whose abilities are a subset of this key's; it fails from the very
    next request on."""
    return api_keys.revoke_for(scope(), caller(), key_id)
