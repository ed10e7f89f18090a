"""URL rules for outbound calls (CONTRACT §12): checked when a URL is saved, and the
resolved addresses checked again when it is called."""

from __future__ import annotations

import socket
import time

import pytest

from sellix_lite.services.urls import UrlRefused, check_target_url, resolve_public

HOST = socket.gethostname()  # a DNS name that resolves to this machine's own address


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "https://10.1.2.3/", "http://localhost",
                                 "https://example.com/hook"])
def test_test_mode_allows_any_http_target(url):
    assert check_target_url(url, mode="test", allow_private=False) == url


@pytest.mark.parametrize("url, message", [
    ("http://example.com/hook", "https"),
    ("https://127.0.0.1/hook", "public"),
    ("https://[::1]/hook", "public"),
    ("https://169.254.169.254/latest", "public"),
    ("https://192.168.1.10/", "public"),
    ("https://printer.local/", "public"),
    ("https://api.localhost/", "public"),
])
def test_live_mode_requires_https_to_public_addresses(url, message):
    with pytest.raises(UrlRefused, match=message):
        check_target_url(url, mode="live", allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/", "https://", "notaurl", "http://:80/",
                                 "https://example.com:99999/", "https://" + "a" * 3000 + ".com"])
def test_malformed_urls_are_refused_in_every_mode(url):
    for mode in ("test", "live"):
        with pytest.raises(UrlRefused):
            check_target_url(url, mode=mode, allow_private=True)


def test_allow_private_targets_lifts_the_live_rules():
    assert check_target_url("http://127.0.0.1:8/x", mode="live", allow_private=True)


def test_a_name_is_accepted_when_saved_but_refused_when_it_resolves_privately():
    url = f"https://{HOST}/hook"
    assert check_target_url(url, mode="live", allow_private=False) == url
    with pytest.raises(UrlRefused, match="private address"):
        resolve_public(HOST, 443)


def test_live_delivery_to_a_name_resolving_privately_is_refused_at_send_time(server):
    """The check at send time stops a DNS name from reaching the server's own network."""
    live = server.client(server.mint(mode="live"))
    created = live.post("/v1/webhooks", json={"url": f"https://{HOST}:9/hook", "events": ["*"]})
    assert created.status_code == 201, created.text
    fired = live.post(f"/v1/webhooks/{created.json()['id']}/test")
    assert fired.json() == {"delivered": False, "response_code": None,
                            "delivery_ms": fired.json()["delivery_ms"]}
    product = live.post("/v1/products", json={"name": "x", "type": "account",
                                              "price_cents": 1, "currency": "USD"})
    assert product.status_code == 201
    endpoint_id = created.json()["id"]
    attempts = []
    deadline = time.monotonic() + 20
    while not attempts and time.monotonic() < deadline:
        deliveries = live.get(f"/v1/webhooks/{endpoint_id}/deliveries").json()["data"]
        attempts = deliveries[0]["attempts"] if deliveries else []
        time.sleep(0.2)
    assert attempts and "private address" in attempts[0]["error"]
    assert attempts[0]["response_code"] is None
