"""Rules for URLs the server calls out to: webhook endpoints and dynamic products (§12).

Test mode may call anything http(s), loopback included, so a laptop integration works.
Live mode calls only https URLs on public addresses, unless the merchant allows private
targets; the address a name resolves to is checked again at send time (see `resolve`), so a
DNS record can't point a live call at the server's own network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


class UrlRefused(ValueError):
    """The URL breaks a rule; the message says which, for the `errors` map."""


def check_target_url(url: str, *, mode: str, allow_private: bool) -> str:
    """The URL if it may be called in `mode`; UrlRefused otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise UrlRefused("must be a valid http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused("must be an http(s) URL with a host")
    if mode == "test" or allow_private:
        return url
    if parts.scheme != "https":
        raise UrlRefused("must use https in live mode")
    if _is_private_name(parts.hostname):
        raise UrlRefused("must point to a public address in live mode")
    return url


def resolve_public(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, refusing any that is not public (send-time check)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlRefused(f"{host} does not resolve: {exc.strerror}") from None
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise UrlRefused(f"{host} resolves to a private address ({address})")
    return addresses


def _is_private_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost") or name.endswith(".local"):
        return True
    try:
        return not ipaddress.ip_address(name).is_global
    except ValueError:
        return False  # a DNS name: checked again when it is resolved at send time
