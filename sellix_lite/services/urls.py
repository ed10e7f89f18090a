"""Rules for URLs the server calls out to: webhook endpoints and dynamic products.

`Targets(mode, settings)` holds the rules of one mode, and its `private_allowed` is the one
place that decides whether a URL may reach loopback and private networks: in test mode unless
`[webhooks] allow_private_targets_in_test` is false, in live mode only when
`allow_private_targets` is true. A URL is judged twice: when it is saved (`check`: the
scheme, and a host written as an address in any notation, or `localhost`), and when it is
called (`addresses`: every address the host resolves to, and the call goes to one of those
checked addresses, so a DNS answer can't change between the check and the connect).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from ..config import WebhooksConfig

MAX_URL_LENGTH = 2048
# Ranges `ipaddress` calls global that still lead somewhere they shouldn't: NAT64 and 6to4
# embed an IPv4 address, Teredo tunnels, IPv4-mapped and -compatible IPv6, carrier-grade NAT
# and the IETF protocol assignments.
NOT_PUBLIC = tuple(ipaddress.ip_network(net) for net in (
    "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::ffff:0:0/96", "::/96",
    "100.64.0.0/10", "192.0.0.0/24"))
# Names that never leave the machine or its link, judged as loopback.
LOCAL_SUFFIXES = (".localhost", ".local")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class UrlRefused(ValueError):
    """The URL breaks a rule; the message says which, for the `errors` map."""


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is on the public internet (not loopback, private or special)."""
    return address.is_global and not any(address in net for net in NOT_PUBLIC)


@dataclass(frozen=True)
class Targets:
    """The URL rules of one mode under the `[webhooks]` settings."""

    mode: str
    settings: WebhooksConfig

    @property
    def private_allowed(self) -> bool:
        """Whether URLs of this mode may reach loopback and private addresses."""
        if self.mode == "test":
            return self.settings.allow_private_targets_in_test
        return self.settings.allow_private_targets

    @property
    def _setting(self) -> str:
        name = "allow_private_targets_in_test" if self.mode == "test" else "allow_private_targets"
        return f"[webhooks] {name} = true"

    def check(self, url: str) -> str:
        """The URL if it may be saved in this mode; UrlRefused naming the rule otherwise."""
        parts = _parse(url)
        address = _written_address(parts.hostname)
        if address is None:  # a DNS name: judged on its addresses when it is called
            self._check_scheme(parts.scheme, public=None)
        else:
            self._check_address(address, parts.hostname)
            self._check_scheme(parts.scheme, public=is_public(address))
        return url

    def addresses(self, url: str) -> list[str]:
        """The addresses the URL's host resolves to now, every one of them allowed.

        Called just before connecting; the caller connects to one of these addresses.
        """
        parts = _parse(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UrlRefused(f"{parts.hostname} does not resolve: {exc.strerror}") from None
        found = [info[4][0] for info in infos]
        for text in found:
            address = ipaddress.ip_address(text.split("%")[0])
            self._check_address(address, f"{parts.hostname} ({text})")
            self._check_scheme(parts.scheme, public=is_public(address))
        return found

    def _check_address(self, address, shown: str) -> None:
        if not is_public(address) and not self.private_allowed:
            raise UrlRefused(f"must point to a public address in {self.mode} mode; {shown} is "
                             f"not public (set {self._setting} to allow it)")

    def _check_scheme(self, scheme: str, *, public: bool | None) -> None:
        """Live mode needs https, except for private targets when those are allowed."""
        if self.mode == "test" or scheme == "https":
            return
        if public or not self.private_allowed:
            raise UrlRefused("must use https in live mode (plain http is allowed only for "
                             "private targets, with [webhooks] allow_private_targets = true)")


def _parse(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise UrlRefused("must be a valid http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefused("must be an http(s) URL with a host")
    if any(ch.isspace() or not ch.isprintable() for ch in parts.hostname):
        raise UrlRefused("must be a valid http(s) URL")
    return parts


def _written_address(host: str):
    """The address a host written as one stands for, in any notation the resolver accepts
    (`127.0.0.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`, `[::1]`); loopback for `localhost`
    and mDNS names; None for other DNS names."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(LOCAL_SUFFIXES):
        return LOOPBACK
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None
