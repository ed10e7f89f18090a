"""Which surface a path belongs to, and what the hooks decide from it."""

from __future__ import annotations

import pytest

from sellix_lite.config import Config
from sellix_lite.web.app import create_app
from sellix_lite.web.surfaces import is_machine_facing, shop_mode, surface_of


@pytest.mark.parametrize("path, surface", [
    ("/v1", "api"),
    ("/v1/", "api"),
    ("/v1/products/prod_1", "api"),
    ("/v1x", "shop"),
    ("/ipn/blockpn", "ipn"),
    ("/ipnx", "shop"),
    ("/dashboard", "dashboard"),
    ("/dashboard/orders", "dashboard"),
    ("/dashboardx", "shop"),
    ("/docs", "docs"),
    ("/download/token", "download"),
    ("/static/shop.css", "static"),
    ("/healthz", "health"),
    ("/", "shop"),
    ("/product/mug", "shop"),
    ("/test/", "shop"),
    ("/test/order/ord_1", "shop"),
    ("", "shop"),
])
def test_surface_of(path, surface):
    assert surface_of(path) == surface


@pytest.mark.parametrize("path, machine", [
    ("/v1", True), ("/v1/orders", True), ("/ipn/blockpn", True),
    ("/", False), ("/dashboard/", False), ("/docs", False), ("/v1x", False),
])
def test_is_machine_facing(path, machine):
    assert is_machine_facing(path) is machine


@pytest.mark.parametrize("path, mode", [
    ("/", "live"), ("/product/mug", "live"), ("/test/", "test"),
    ("/test/product/mug", "test"), ("/testing", "live"),
])
def test_shop_mode(path, mode):
    assert shop_mode(path) == mode


def test_unknown_paths_answer_in_their_surface_format(tmp_path):
    client = create_app(Config(base_dir=tmp_path), "k" * 40).test_client()
    api = client.get("/v1/nowhere")
    assert api.status_code == 404
    assert api.mimetype == "application/problem+json"
    page = client.get("/v1x")
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert "Content-Security-Policy" in page.headers
