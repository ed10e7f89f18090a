"""URL rules for outbound calls (docs/webhooks.md, URL rules): checked when a URL is saved, and the
resolved addresses checked again when it is called."""

from __future__ import annotations

import socket

import pytest

from sellix_lite.config import WebhooksConfig
from sellix_lite.services.urls import Targets, UrlRefused

from support import assert_invalid

HOST = socket.gethostname()  # a DNS name that resolves to this machine's own address
DEFAULTS = WebhooksConfig()
PRIVATE_LIVE = WebhooksConfig(allow_private_targets=True)
NO_PRIVATE_TEST = WebhooksConfig(allow_private_targets_in_test=False)


def check_target_url(url: str, *, mode: str, settings: WebhooksConfig = DEFAULTS) -> str:
    return Targets(mode, settings).check(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "https://10.1.2.3/", "http://localhost",
                                 "https://example.com/hook"])
def test_test_mode_allows_any_http_target(url):
    assert check_target_url(url, mode="test") == url


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
        check_target_url(url, mode="live")


@pytest.mark.parametrize("url", ["ftp://example.com/", "https://", "notaurl", "http://:80/",
                                 "https://example.com:99999/", "https://" + "a" * 3000 + ".com"])
def test_malformed_urls_are_refused_in_every_mode(url):
    for mode in ("test", "live"):
        with pytest.raises(UrlRefused):
            check_target_url(url, mode=mode, settings=PRIVATE_LIVE)


def test_allow_private_targets_lifts_the_live_rules():
    assert check_target_url("http://127.0.0.1:8/x", mode="live", settings=PRIVATE_LIVE)


def test_a_name_is_accepted_when_saved_but_refused_when_it_resolves_privately():
    url = f"https://{HOST}/hook"
    assert check_target_url(url, mode="live") == url
    with pytest.raises(UrlRefused, match="private"):
        Targets("live", DEFAULTS).addresses(url)


def test_live_delivery_to_a_name_resolving_privately_is_refused_at_send_time(client, tick):
    """The check at send time stops a DNS name from reaching the server's own network."""
    live = client.keyed(mode="live")
    created = live.post("/v1/webhooks", json={"url": f"https://{HOST}:9/hook", "events": ["*"]})
    assert created.status_code == 201, created.text
    fired = live.post(f"/v1/webhooks/{created.json()['id']}/test")
    assert fired.json() == {"delivered": False, "response_code": None,
                            "delivery_ms": fired.json()["delivery_ms"]}
    product = live.post("/v1/products", json={"name": "x", "type": "account",
                                              "price_cents": 1, "currency": "USD"})
    assert product.status_code == 201
    tick("deliver_webhooks")
    (delivery,) = live.get(f"/v1/webhooks/{created.json()['id']}/deliveries").json()["data"]
    (attempt,) = delivery["attempts"]
    assert "allow_private_targets = true" in attempt["error"]
    assert attempt["response_code"] is None


# --- what counts as public, in every notation -------------------------------------------

LOOPBACK_NOTATIONS = ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "0",
                      "[::ffff:127.0.0.1]", "[::127.0.0.1]", "LOCALHOST", "localhost."]
SPECIAL_RANGES = ["[64:ff9b::a00:1]", "[64:ff9b:1::1]", "[2002:7f00:1::1]", "[2001::1]",
                  "100.64.0.1", "100.127.255.254", "192.0.0.8", "[::ffff:8.8.8.8]"]


@pytest.mark.parametrize("host", LOOPBACK_NOTATIONS + SPECIAL_RANGES)
def test_live_mode_judges_every_notation_of_a_private_address_when_saved(host):
    with pytest.raises(UrlRefused, match=r"\[webhooks\] allow_private_targets = true"):
        check_target_url(f"https://{host}/hook", mode="live")


@pytest.mark.parametrize("host", ["8.8.8.8", "[2606:4700:4700::1111]", "134744072"])
def test_public_addresses_pass_in_any_notation(host):
    assert check_target_url(f"https://{host}/hook", mode="live")


def test_test_mode_refuses_private_targets_when_told():
    for url in ("http://127.0.0.1:9/x", "http://2130706433/x", "http://localhost/x",
                "https://10.1.2.3/", "http://[::1]/x", "http://100.64.0.1/"):
        with pytest.raises(UrlRefused,
                           match=r"\[webhooks\] allow_private_targets_in_test = true"):
            check_target_url(url, mode="test", settings=NO_PRIVATE_TEST)
    assert check_target_url("http://example.com/hook", mode="test", settings=NO_PRIVATE_TEST)
    with pytest.raises(UrlRefused, match="allow_private_targets_in_test"):
        Targets("test", NO_PRIVATE_TEST).addresses(f"http://{HOST}/hook")


def test_private_targets_may_use_http_in_live_mode_but_public_ones_never():
    assert check_target_url("http://10.0.0.5/hook", mode="live", settings=PRIVATE_LIVE)
    assert check_target_url("http://localhost:8/hook", mode="live", settings=PRIVATE_LIVE)
    with pytest.raises(UrlRefused, match="https"):
        check_target_url("http://8.8.8.8/hook", mode="live", settings=PRIVATE_LIVE)
    with pytest.raises(UrlRefused, match="https"):
        check_target_url("http://example.com/hook", mode="live")
    # A name is judged on the addresses it resolves to when it is called.
    assert Targets("live", PRIVATE_LIVE).addresses(f"http://{HOST}:9/hook")
    assert Targets("live", PRIVATE_LIVE).addresses("http://2130706433:9/") == ["127.0.0.1"]


def test_the_setting_that_would_allow_a_url_is_named_through_the_api(make_server):
    srv = make_server(config="[webhooks]\nallow_private_targets_in_test = false\n")
    test, live = srv.client(srv.mint()), srv.client(srv.mint(mode="live"))
    for client, setting in ((test, "allow_private_targets_in_test"),
                            (live, "allow_private_targets")):
        for url in ("https://2130706433/hook", "https://[64:ff9b::7f00:1]/hook"):
            refused = client.post("/v1/webhooks", json={"url": url, "events": ["*"]})
            assert_invalid(refused, "url")
            assert f"[webhooks] {setting} = true" in refused.json()["errors"]["url"]
            product = client.post("/v1/products", json={
                "name": "Dyn", "type": "dynamic", "price_cents": 100, "currency": "USD",
                "dynamic_url": url})
            assert_invalid(product, "dynamic_url")
            assert setting in product.json()["errors"]["dynamic_url"]
