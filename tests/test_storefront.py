"""The storefront (docs/storefront.md) through the real server: a buyer in headless Chromium on a
desktop and a phone, the same flow without JavaScript and with plain form posts, checkout
rules (validation, stock, CSRF, per-IP limit, shipping), order-link access, XSS in merchant
content, security headers, shop name and currencies from the config, live versus test
products, and friendly error pages.

Screenshots of every page land in `tests/artifacts/` for a human to look at."""

from __future__ import annotations

import re
import secrets
import string
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from playwright.sync_api import expect

from sellix_lite.errors import Unprocessable
from sellix_lite.web import storefront

from conftest import GENEROUS_LIMITS, Server, running_server, wait_until
from support import (
    Reply,
    buyer,
    fetch,
    get_product,
    key_product,
    live_mode_shop,
    make_product,
    pay,
    place_order,
    wait_for_status,
)

# The shared shop never trips the per-IP checkout limit; the limit has a test of its own.
SHOP_LIMITS = GENEROUS_LIMITS + "checkouts_per_minute_per_ip = 100000\n"
DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True,
              "device_scale_factor": 2},
}
ORDER_PATH = re.compile(r"/(test/)?order/(ord_[0-9A-Za-z]+)\?t=([^&\s\"']+)$")
CSRF_MESSAGE = "The form has expired or was not sent by this site"
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The module's shop (overrides the shared one: it takes many storefront checkouts)."""
    with running_server(tmp_path_factory.mktemp("storefront"), SHOP_LIMITS) as shop:
        yield shop


@pytest.fixture(scope="module")
def ninja(tmp_path_factory):
    """A shop named "Ninja Keys" whose live mode pays through the BlockPN simulator;
    `ninja.live` and `ninja.test` are clients of either mode."""
    with live_mode_shop(tmp_path_factory, SHOP_LIMITS + '[shop]\nname = "Ninja Keys"\n',
                        name="ninja") as shop:
        shop.test = shop.client(shop.mint(mode="test", name="test"))
        yield shop


# --- helpers ------------------------------------------------------------------------------

def orders_of(client, email: str) -> list[dict]:
    response = client.get("/v1/orders", params={"customer_email": email, "limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def all_order_ids(client) -> set[str]:
    ids, params = set(), {"limit": 100}
    while True:
        response = client.get("/v1/orders", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        ids.update(order["id"] for order in page["data"])
        if not page["has_more"]:
            return ids
        params["cursor"] = page["next_cursor"]


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token"\s+value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def product_url(shop: Server, slug: str, mode: str = "test") -> str:
    return f"{shop.url}{'/test' if mode == 'test' else ''}/product/{slug}"


def open_form(session: requests.Session, shop: Server, slug: str, mode: str = "test") -> str:
    """GET the product page (which sets the CSRF cookie) and return the form's token."""
    page = session.get(product_url(shop, slug, mode), timeout=30)
    assert page.status_code == 200, page.text
    return form_token(page.text)


def post_checkout(session: requests.Session, shop: Server, slug: str, token: str | None,
                  mode: str = "test", **fields) -> requests.Response:
    data = dict(fields)
    if token is not None:
        data["csrf_token"] = token
    return session.post(product_url(shop, slug, mode) + "/checkout", data=data,
                        allow_redirects=False, timeout=30)


def checkout(session: requests.Session, shop: Server, slug: str, mode: str = "test",
             **fields) -> requests.Response:
    """The buyer's checkout with plain HTTP: load the form, post it, don't follow."""
    token = open_form(session, shop, slug, mode)
    return post_checkout(session, shop, slug, token, mode, **fields)


def error_messages(html: str) -> list[str]:
    """What the page shows in its error / notice paragraphs, unescaped."""
    parser = TagCollector()
    parser.feed(html)
    return parser.messages


def page_text(html: str) -> str:
    parser = TagCollector()
    parser.feed(html)
    return " ".join(" ".join(parser.text).split())


class TagCollector(HTMLParser):
    """Every start tag with its attributes, the visible text, and alert messages."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.messages: list[str] = []
        self._alert_depth = 0
        self._alert: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {name.lower(): (value or "") for name, value in attrs}
        self.tags.append((tag.lower(), attributes))
        if self._alert_depth:
            self._alert_depth += 1
        elif attributes.get("role") == "alert" or "error" in attributes.get("class", "").split():
            self._alert_depth, self._alert = 1, []

    def handle_endtag(self, tag):
        if self._alert_depth:
            self._alert_depth -= 1
            if not self._alert_depth:
                self.messages.append(" ".join("".join(self._alert).split()))

    def handle_data(self, data):
        self.text.append(data)
        if self._alert_depth:
            self._alert.append(data)


def assert_secure_html(response: requests.Response) -> None:
    """The headers every HTML page carries (CSP without inline script, no framing, ...)."""
    where = response.request.path_url
    assert response.headers.get("Content-Type", "").startswith("text/html"), where
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"no Content-Security-Policy on {where}"
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    assert "script-src" in directives, (where, policy)
    assert "'self'" in directives["script-src"], (where, policy)
    assert "'unsafe-inline'" not in directives["script-src"], (where, policy)
    assert "'unsafe-eval'" not in directives["script-src"], (where, policy)
    assert directives.get("frame-ancestors") == ["'none'"], (where, policy)
    assert response.headers.get("X-Content-Type-Options", "").lower() == "nosniff", where
    assert response.headers.get("Referrer-Policy", "").strip(), where


def assert_no_active_content(html: str) -> None:
    """No script but our own files, no event handler, no javascript: URL, no frame."""
    parser = TagCollector()
    parser.feed(html)
    for tag, attributes in parser.tags:
        assert tag not in ("iframe", "frame", "object", "embed", "img"), (tag, attributes)
        if tag == "script":
            assert attributes.get("src", "").startswith("/static/"), attributes
        for name, value in attributes.items():
            assert not name.startswith("on"), (tag, attributes)
            if tag == "link" and attributes == {"rel": "icon", "href": "data:,"}:
                continue  # the page's own empty icon, which spares a /favicon.ico request
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                squashed = re.sub(r"[\s\x00-\x1f]", "", value).lower()
                assert not squashed.startswith(("javascript:", "vbscript:", "data:")), \
                    (tag, attributes)


def home_card(html: str, href: str) -> str:
    """The home page's list item that links to `href`, as text."""
    for chunk in html.split("<li")[1:]:
        if f'href="{href}"' in chunk:
            return page_text("<li" + chunk.split("</li>")[0])
    raise AssertionError(f"no product card links to {href}")


def tampered(token: str, position: int) -> str:
    """`token` with the character at `position` changed to one that can't decode the same."""
    char = token[position]
    if char in BASE64URL:
        replacement = BASE64URL[BASE64URL.index(char) ^ 32]
    else:
        replacement = "A"
    return token[:position] + replacement + token[position + 1:]


class PageWatch:
    """Console messages, script errors and dialogs of one page."""

    def __init__(self, page):
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda message: self.console.append(
            f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def csp_violations(self) -> list[str]:
        return [line for line in self.console
                if "Content Security Policy" in line or "Refused to" in line]


def assert_fits(page, device: str) -> None:
    """No horizontal scrolling: the document is no wider than the viewport."""
    width = DEVICES[device]["viewport"]["width"]
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} scrolls sideways on the {device}: {scroll_width}px"


def snapshot(page, artifacts: Path, device: str, name: str) -> None:
    page.screenshot(path=str(artifacts / f"storefront-{device}-{name}.png"), full_page=True)


# --- 1. the buyer in a browser, desktop and phone ------------------------------------------

GAME_KEY_DESCRIPTION = ("**Instant delivery** right after payment.\n\n"
                        "- Works in *every* region\n- One key per unit\n")


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_buyer_flow_in_the_browser(server, api, browser, artifacts, device):
    product, pool = key_product(api, 3, name="Game Key", price_cents=4900, currency="USD",
                                description=GAME_KEY_DESCRIPTION)
    product_path = f"/test/product/{product['slug']}"
    context = browser.new_context(**DEVICES[device])
    try:
        page = context.new_page()
        watch = PageWatch(page)

        # The shop (test mode): banner, the product with its price.
        response = page.goto(server.url + "/test/")
        assert response.status == 200
        expect(page.get_by_text("TEST MODE")).to_be_visible()
        card = page.locator(f'a[href="{product_path}"]')
        expect(card).to_be_visible()
        expect(card).to_contain_text("Game Key")
        expect(card).to_contain_text("49.00 USD")
        assert_fits(page, device)
        snapshot(page, artifacts, device, "home")

        # The product page, its Markdown description rendered.
        card.click()
        page.wait_for_url(server.url + product_path)
        expect(page.locator("h1")).to_have_text("Game Key")
        expect(page.get_by_text("TEST MODE")).to_be_visible()
        expect(page.locator("strong", has_text="Instant delivery")).to_be_visible()
        expect(page.locator("em", has_text="every")).to_be_visible()
        expect(page.locator("li", has_text="One key per unit")).to_be_visible()
        expect(page.locator("main")).to_contain_text("49.00 USD")
        assert_fits(page, device)
        snapshot(page, artifacts, device, "product")

        # Checkout → the order page, waiting for the payment.
        email = buyer(device)
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Check out").click()
        page.wait_for_url(re.compile(r"/test/order/ord_\w+\?t="))
        order_id = ORDER_PATH.search(page.url).group(2)
        order = fetch(api, order_id)
        assert order["status"] == "awaiting_payment"
        assert order["customer_email"] == email
        assert order["items"][0]["product_id"] == product["id"]
        status = page.locator("#order-status")
        expect(status).to_have_text("Waiting for your payment")
        main = page.locator("main")
        expect(main).to_contain_text("49.00 USD")
        expect(main).to_contain_text(order["payment"]["asset_amount"])
        expect(main).to_contain_text(order["payment"]["address"])
        assert "<svg" in page.content(), "the QR code is not an inline SVG"
        expect(main.locator("svg")).to_have_count(1)
        expect(main.locator("svg")).to_be_visible()
        assert page.locator("main img").count() == 0
        countdown = main.locator("time")
        expect(countdown).to_have_count(1)
        first = countdown.inner_text()
        changed = wait_until(lambda: countdown.inner_text() != first and countdown.inner_text(),
                             timeout=5, interval=0.2, what="the countdown to tick")
        assert re.search(r"\d", changed), changed
        assert_fits(page, device)
        snapshot(page, artifacts, device, "order")

        # Simulate payment (a form post) → delivered, with a key of the pool.
        page.get_by_role("button", name="Simulate payment").click()
        expect(status).to_have_text("Delivered", timeout=15_000)
        assert ORDER_PATH.search(page.url).group(2) == order_id
        paid = fetch(api, order_id)
        assert paid["status"] == "completed"
        keys = paid["delivery"]["keys"]
        assert len(keys) == 1 and keys[0] in pool
        shown = [text.strip() for text in main.locator("code").all_inner_texts()]
        assert shown == keys
        expect(page.get_by_role("button", name="Simulate payment")).to_have_count(0)
        assert_fits(page, device)
        snapshot(page, artifacts, device, "order-delivered")

        # A page that doesn't exist.
        response = page.goto(server.url + "/test/product/nope")
        assert response.status == 404
        expect(page.locator("h1")).to_have_text("Not found")
        assert_fits(page, device)
        snapshot(page, artifacts, device, "404")

        assert watch.csp_violations() == [], watch.console
        assert watch.errors == [], watch.errors
        assert watch.dialogs == []
    finally:
        context.close()


def test_order_page_updates_in_place_when_paid(server, api, browser):
    product, pool = key_product(api, 2)
    order = place_order(api, product["id"])
    context = browser.new_context(**DEVICES["desktop"])
    try:
        page = context.new_page()
        watch = PageWatch(page)
        assert page.goto(order["payment"]["checkout_url"]).status == 200
        status = page.locator("#order-status")
        expect(status).to_have_text("Waiting for your payment")
        page.evaluate("window.__marker = 1")
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url)
                if frame == page.main_frame else None)

        response = api.post(f"/v1/test_helpers/orders/{order['id']}/pay", json={})
        assert response.status_code == 200, response.text

        expect(status).to_have_text("Delivered", timeout=20_000)
        assert page.evaluate("window.__marker") == 1, "the page reloaded instead of updating"
        assert navigations == []
        keys = fetch(api, order["id"])["delivery"]["keys"]
        assert len(keys) == 1 and keys[0] in pool
        expect(page.locator("main code")).to_have_text(keys)
        expect(page.get_by_role("button", name="Simulate payment")).to_have_count(0)
        assert watch.csp_violations() == [], watch.console
        assert watch.errors == []
    finally:
        context.close()


# --- 2. without JavaScript ----------------------------------------------------------------

def test_checkout_and_payment_work_without_javascript(server, api, browser, artifacts):
    product, pool = key_product(api, 4, name="Game Key", description=GAME_KEY_DESCRIPTION)
    context = browser.new_context(java_script_enabled=False, **DEVICES["phone"])
    try:
        page = context.new_page()
        assert page.goto(product_url(server, product["slug"])).status == 200
        expect(page.locator("strong", has_text="Instant delivery")).to_be_visible()
        email = buyer("nojs")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Quantity").fill("2")
        page.get_by_role("button", name="Check out").click()
        page.wait_for_url(re.compile(r"/test/order/ord_\w+\?t="))
        order_id = ORDER_PATH.search(page.url).group(2)
        order = fetch(api, order_id)
        assert order["customer_email"] == email and order["items"][0]["qty"] == 2
        expect(page.locator("#order-status")).to_have_text("Waiting for your payment")
        expect(page.locator("main")).to_contain_text("98.00 USD")
        expect(page.locator("main")).to_contain_text(order["payment"]["address"])
        assert re.search(r'<noscript>\s*<meta[^>]*http-equiv="refresh"[^>]*>\s*</noscript>',
                         page.content(), re.I), "no <noscript> refresh while awaiting payment"
        snapshot(page, artifacts, "nojs", "order")

        page.get_by_role("button", name="Simulate payment").click()
        expect(page.locator("#order-status")).to_have_text("Delivered")
        keys = fetch(api, order_id)["delivery"]["keys"]
        assert len(keys) == 2 and set(keys) <= set(pool) and len(set(keys)) == 2
        shown = [text.strip() for text in page.locator("main code").all_inner_texts()]
        assert sorted(shown) == sorted(keys)
        assert "http-equiv=\"refresh\"" not in page.content(), "a finished order keeps reloading"
        snapshot(page, artifacts, "nojs", "order-delivered")
    finally:
        context.close()


def test_checkout_with_plain_form_posts(server, api):
    product, pool = key_product(api, 2)
    session = requests.Session()
    token = open_form(session, server, product["slug"])
    assert session.cookies.get("sellix_csrf"), "the form page sets no CSRF cookie"
    email = buyer("plain")
    response = post_checkout(session, server, product["slug"], token, email=email, qty="1",
                             coin="ethereum:USDC")
    assert response.status_code == 303, response.text
    location = urljoin(server.url + "/", response.headers["Location"])
    match = ORDER_PATH.search(location)
    assert match and match.group(1) == "test/", location
    assert urlsplit(location).netloc == urlsplit(server.url).netloc
    order = fetch(api, match.group(2))
    assert order["customer_email"] == email
    assert (order["payment"]["chain"], order["payment"]["asset"]) == ("ethereum", "USDC")

    page = session.get(location, timeout=30)
    assert page.status_code == 200
    text = page_text(page.text)
    assert "Waiting for your payment" in text
    assert order["payment"]["address"] in text and "49.00 USD" in text
    assert re.search(r'<noscript>\s*<meta[^>]*http-equiv="refresh"', page.text, re.I)
    assert "<svg" in page.text

    action = re.search(r'<form[^>]*action="([^"]*simulate-payment[^"]*)"', page.text)
    assert action, "no Simulate payment form"
    paid = session.post(urljoin(location, action.group(1).replace("&amp;", "&")),
                        data={"csrf_token": form_token(page.text)}, allow_redirects=False,
                        timeout=30)
    assert paid.status_code == 303, paid.text
    after = session.get(urljoin(location, paid.headers["Location"]), timeout=30)
    assert after.status_code == 200
    keys = fetch(api, order["id"])["delivery"]["keys"]
    assert len(keys) == 1 and keys[0] in pool
    assert "Delivered" in page_text(after.text) and keys[0] in after.text


# --- 3. checkout rules --------------------------------------------------------------------

def test_invalid_email_is_refused_politely(server, api):
    product, _ = key_product(api, 2)
    before = all_order_ids(api)
    response = checkout(requests.Session(), server, product["slug"], email="not-an-email")
    assert response.status_code == 422
    assert_secure_html(response)
    assert "Please enter a valid email address." in error_messages(response.text)
    assert 'value="not-an-email"' in response.text, "the form forgets what was typed"
    assert all_order_ids(api) == before


def test_sold_out_product(server, api):
    product, _ = key_product(api, 0)
    page = requests.get(product_url(server, product["slug"]), timeout=30)
    assert page.status_code == 200
    assert "sold out" in page_text(page.text).lower()
    assert "<form" not in page.text, "a sold-out product still offers a checkout form"
    home = requests.get(server.url + "/test/", timeout=30)
    assert "sold out" in home_card(home.text, f"/test/product/{product['slug']}").lower()

    # A buyer who had the page open before the last key went.
    email = buyer("late")
    session = requests.Session()
    other, _ = key_product(api, 1)
    token = open_form(session, server, other["slug"])
    response = post_checkout(session, server, product["slug"], token, email=email)
    assert response.status_code == 422
    assert "sold out" in page_text(response.text).lower()
    assert orders_of(api, email) == []


def test_more_than_in_stock_gets_a_polite_message(server, api):
    product, _ = key_product(api, 2)
    email = buyer("greedy")
    response = checkout(requests.Session(), server, product["slug"], email=email, qty="5")
    assert response.status_code == 422
    messages = error_messages(response.text)
    assert any("only 2 left" in message for message in messages), messages
    assert "Traceback" not in response.text
    assert orders_of(api, email) == []
    assert get_product(api, product["id"])["stock"] == 2


def test_quantity_over_the_per_order_limit(server, api):
    product = make_product(api, type="account", delivery_text="invite", stock=None)
    email = buyer("bulk")
    response = checkout(requests.Session(), server, product["slug"], email=email, qty="101")
    assert response.status_code == 422
    messages = error_messages(response.text)
    assert any("at most 100" in message for message in messages), messages
    assert orders_of(api, email) == []


def test_checkout_requires_the_csrf_token_and_cookie(server, api):
    product, _ = key_product(api, 5)
    slug = product["slug"]
    session = requests.Session()
    token = open_form(session, server, slug)
    another_browser = requests.Session()
    foreign_token = open_form(another_browser, server, slug)
    cookieless = requests.Session()

    attempts = {
        "no token": (session, None),
        "forged token": (session, "forged-" + secrets.token_urlsafe(30)),
        "tampered token": (session, tampered(token, len(token) // 2)),
        "another browser's token": (session, foreign_token),
        "a token without its cookie": (cookieless, token),
    }
    for what, (client, sent) in attempts.items():
        email = buyer("csrf")
        response = post_checkout(client, server, slug, sent, email=email)
        assert response.status_code == 400, (what, response.status_code)
        assert_secure_html(response)
        assert CSRF_MESSAGE in page_text(response.text), what
        assert orders_of(api, email) == [], what

    # The genuine pair still works.
    email = buyer("csrf-ok")
    assert post_checkout(session, server, slug, token, email=email).status_code == 303
    assert len(orders_of(api, email)) == 1


def test_simulate_payment_requires_the_csrf_token(server, api):
    product, _ = key_product(api, 1)
    order = place_order(api, product["id"])
    session = requests.Session()
    page = session.get(order["payment"]["checkout_url"], timeout=30)
    assert page.status_code == 200
    action = order["payment"]["checkout_url"].replace("?t=", "/simulate-payment?t=")
    response = session.post(action, data={}, allow_redirects=False, timeout=30)
    assert response.status_code == 400
    assert CSRF_MESSAGE in page_text(response.text)
    assert fetch(api, order["id"])["status"] == "awaiting_payment"


def test_checkouts_are_limited_per_ip(make_server):
    shop = make_server(config="[limits]\ncheckouts_per_minute_per_ip = 3\n")
    client = shop.client(shop.mint())
    product, _ = key_product(client, 10)
    session = requests.Session()
    email = buyer("hasty")
    for _ in range(3):
        response = checkout(session, shop, product["slug"], email=email)
        assert response.status_code == 303, response.text
    response = checkout(session, shop, product["slug"], email=email)
    assert response.status_code == 429
    assert_secure_html(response)
    text = page_text(response.text)
    assert re.search(r"wait \d+ seconds?", text), text
    assert len(orders_of(client, email)) == 3
    assert get_product(client, product["id"])["stock"] == 7


def test_physical_product_asks_for_a_shipping_address(server, api):
    product = make_product(api, type="physical", stock=5, price_cents=2500)
    session = requests.Session()
    page = session.get(product_url(server, product["slug"]), timeout=30)
    assert page.status_code == 200
    for field in ("name", "line1", "city", "postal_code", "country"):
        assert re.search(rf'<input[^>]*name="{field}"', page.text), f"no {field} field"
    token = form_token(page.text)

    email = buyer("ship")
    response = post_checkout(session, server, product["slug"], token, email=email)
    assert response.status_code == 422
    messages = error_messages(response.text)
    assert any("address" in message.lower() for message in messages), messages
    assert orders_of(api, email) == []

    response = post_checkout(session, server, product["slug"], token, email=email,
                             name="Ada Buyer", line1="1 Main Street", city="Berlin",
                             postal_code="10115", country="DE")
    assert response.status_code == 303, error_messages(response.text)
    assert len(orders_of(api, email)) == 1


def test_an_unknown_country_gets_a_polite_message(server, api):
    product = make_product(api, type="physical", stock=5, price_cents=2500)
    email = buyer("nowhere")
    response = checkout(requests.Session(), server, product["slug"], email=email,
                        name="Ada Buyer", line1="1 Main Street", city="Berlin",
                        postal_code="10115", country="XX")
    assert response.status_code == 422
    assert "Country: use a two-letter code such as DE or US." in error_messages(response.text)
    assert orders_of(api, email) == []


@pytest.mark.parametrize("field, wording, code, messages", [
    ("qty", "any wording", "sold_out", {"qty": "Sorry, this product is sold out."}),
    ("qty", "the product is sold out", None, {"qty": "Quantity: the product is sold out."}),
    ("shipping_address", "any wording", "invalid_country",
     {"shipping_address": "Country: use a two-letter code such as DE or US."}),
    ("shipping_address", "country is required", "invalid_name",
     {"shipping_address": "Shipping address: country is required."}),
])
def test_form_messages_follow_the_error_code_not_its_wording(field, wording, code, messages):
    codes = {field: code} if code else None
    error = Unprocessable(errors={field: wording}, codes=codes)
    assert storefront._messages(error) == messages


# --- 4. order page access -----------------------------------------------------------------

def test_order_page_refuses_a_missing_or_tampered_token(server, api):
    product, _ = key_product(api, 2)
    order = place_order(api, product["id"])
    url = order["payment"]["checkout_url"]
    path, token = url.split("?t=")
    secrets_of_the_order = [order["payment"]["address"], order["payment"]["asset_amount"],
                            "49.00", order["customer_email"]]

    def refused(response, what):
        assert response.status_code == 403, (what, response.status_code)
        assert_secure_html(response)
        for secret in secrets_of_the_order:
            assert secret not in response.text, (what, secret)

    refused(requests.get(path, timeout=30), "no token")
    refused(requests.get(path + "?t=", timeout=30), "empty token")
    refused(requests.get(path + "?t=" + secrets.token_urlsafe(40), timeout=30), "random")
    for position in range(len(token)):
        refused(requests.get(f"{path}?t={tampered(token, position)}", timeout=30),
                f"character {position} changed")
    other = place_order(api, product["id"])
    other_token = other["payment"]["checkout_url"].split("?t=")[1]
    refused(requests.get(f"{path}?t={other_token}", timeout=30), "another order's token")

    live = requests.get(path + "/live", timeout=30)
    assert live.status_code == 403
    assert order["payment"]["address"] not in live.text
    live = requests.get(f"{path}/live?t={tampered(token, 3)}", timeout=30)
    assert live.status_code == 403
    assert order["payment"]["address"] not in live.text
    live = requests.get(f"{path}/live?t={token}", timeout=30)
    assert live.status_code == 200
    assert live.json()["status"] == "awaiting_payment"

    assert requests.get(url, timeout=30).status_code == 200


def test_order_link_accepts_only_the_token_it_was_given(server, api):
    """Every other value of the token's last character is refused too (the signature's
    final base64 character carries unused bits: a different string must not pass)."""
    product, _ = key_product(api, 1)
    order = place_order(api, product["id"])
    path, token = order["payment"]["checkout_url"].split("?t=")
    accepted = [char for char in BASE64URL if char != token[-1] and requests.get(
        f"{path}?t={token[:-1]}{char}", timeout=30).status_code != 403]
    assert accepted == [], f"altered tokens ending in {accepted} still open the order"


def test_test_order_is_not_served_under_the_live_prefix(server, api):
    product, _ = key_product(api, 1)
    order = place_order(api, product["id"])
    path, token = order["payment"]["checkout_url"].split("?t=")
    live_path = path.replace("/test/order/", "/order/")
    response = requests.get(f"{live_path}?t={token}", timeout=30)
    assert response.status_code == 404
    assert order["payment"]["address"] not in response.text
    assert requests.get(f"{live_path}/live?t={token}", timeout=30).status_code == 404


# --- 5. merchant content can't run script --------------------------------------------------

XSS_DESCRIPTION = "\n\n".join([
    "Plain **bold** text and a [help page](https://example.com/help).",
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click](javascript:window.__xss=1)",
    '<a href="javascript:alert(1)">a</a>',
    '<iframe src="javascript:window.__xss=1"></iframe>',
    "<svg onload=\"window.__xss=1\"></svg>",
    '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
])


def test_description_and_name_cannot_inject_script(server, api, browser):
    name = f"<b>Bold</b> Name {secrets.token_hex(2)}"
    product, _ = key_product(api, 2, name=name, description=XSS_DESCRIPTION)
    url = product_url(server, product["slug"])

    html = requests.get(url, timeout=30).text
    assert_no_active_content(html)
    assert "<strong>bold</strong>" in html
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt;" in html
    assert not re.search(r"<script(?![^>]*\ssrc=\"/static/)", html, re.I)
    # An onerror attribute of a tag, not those words inside an attribute's quoted value
    # (the meta description quotes the description's text).
    assert not re.search(r"<[a-z](?:[^>\"']|\"[^\"]*\"|'[^']*')*\sonerror\s*=", html, re.I)
    assert not re.search(r"<[a-z][^<>]*\shref\s*=\s*[\"']?\s*javascript:", html, re.I)
    assert "<iframe" not in html.lower()
    assert re.search(r'<a href="https://example.com/help"[^>]*>help page</a>', html)

    home = requests.get(server.url + "/test/", timeout=30).text
    assert_no_active_content(home)
    assert name in home_card(home, f"/test/product/{product['slug']}")
    assert "<b>Bold</b>" not in home

    order = place_order(api, product["id"])
    order_html = requests.get(order["payment"]["checkout_url"], timeout=30).text
    assert_no_active_content(order_html)
    assert "<b>Bold</b>" not in order_html and "&lt;b&gt;Bold&lt;/b&gt;" in order_html

    context = browser.new_context(**DEVICES["desktop"])
    try:
        page = context.new_page()
        watch = PageWatch(page)
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.__xss") == "undefined"
        expect(page.locator("h1")).to_have_text(name)
        expect(page.locator("h1 b")).to_have_count(0)
        description = page.locator(".description")
        expect(description.locator("strong")).to_have_text("bold")
        expect(description.locator("script, img, iframe, svg, object, embed")).to_have_count(0)
        for href in description.locator("a").evaluate_all("links => links.map(a => a.href)"):
            assert href.startswith(("http://", "https://", "mailto:")), href
        for text in ("click", "javascript:alert(1)", "data"):
            description.get_by_text(text).first.click()
        page.wait_for_timeout(300)
        assert page.url == url
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert watch.dialogs == []
        assert watch.errors == []
    finally:
        context.close()


# --- 6. security headers ------------------------------------------------------------------

def test_security_headers_on_every_html_page(server, api):
    product, _ = key_product(api, 3)
    order = place_order(api, product["id"])
    path = order["payment"]["checkout_url"].split("?t=")[0]
    session = requests.Session()
    responses = {
        "live home": session.get(server.url + "/", timeout=30),
        "test home": session.get(server.url + "/test/", timeout=30),
        "product": session.get(product_url(server, product["slug"]), timeout=30),
        "order": session.get(order["payment"]["checkout_url"], timeout=30),
        "404": session.get(server.url + "/no-such-page", timeout=30),
        "403": session.get(path + "?t=bad", timeout=30),
        "400": post_checkout(session, server, product["slug"], None, email=buyer()),
        "422": checkout(session, server, product["slug"], email="nope"),
    }
    expected = {"live home": 200, "test home": 200, "product": 200, "order": 200, "404": 404,
                "403": 403, "400": 400, "422": 422}
    for what, response in responses.items():
        assert response.status_code == expected[what], what
        assert_secure_html(response)


# --- 7. shop name, currencies, live and test, archived -------------------------------------

def test_shop_name_comes_from_the_config(ninja):
    product = make_product(ninja.live, name=f"Ninja Star {secrets.token_hex(2)}",
                           type="account", delivery_text="x", stock=3)
    for url in (ninja.url + "/", ninja.url + "/test/", product_url(ninja, product["slug"], "live"),
                ninja.url + "/no-such-page"):
        response = requests.get(url, timeout=30)
        title = re.search(r"<title>(.*?)</title>", response.text, re.S).group(1)
        assert "Ninja Keys" in title, (url, title)
        brand = re.search(r"<header[^>]*>(.*?)</header>", response.text, re.S).group(1)
        assert "Ninja Keys" in page_text(brand), url
        assert "sellix-lite shop" not in response.text


def test_prices_use_each_currencys_decimals(ninja):
    jpy = make_product(ninja.live, name=f"Yen Key {secrets.token_hex(2)}", type="account",
                       delivery_text="x", price_cents=4900, currency="JPY", stock=3)
    eur = make_product(ninja.live, name=f"Euro Key {secrets.token_hex(2)}", type="account",
                       delivery_text="x", price_cents=1290, currency="EUR", stock=3)
    home = requests.get(ninja.url + "/", timeout=30).text
    assert "4,900 JPY" in home_card(home, f"/product/{jpy['slug']}")
    assert "12.90 EUR" in home_card(home, f"/product/{eur['slug']}")
    assert "4,900 JPY" in page_text(requests.get(product_url(ninja, jpy["slug"], "live"),
                                                 timeout=30).text)
    assert "12.90 EUR" in page_text(requests.get(product_url(ninja, eur["slug"], "live"),
                                                 timeout=30).text)
    assert "49.00 JPY" not in home


def test_live_products_at_root_and_test_products_under_test(ninja):
    tag = secrets.token_hex(2)
    live = make_product(ninja.live, name=f"Live Blade {tag}", type="account", delivery_text="x",
                        stock=2)
    test = make_product(ninja.test, name=f"Test Blade {tag}", type="account", delivery_text="x",
                        stock=2)
    root = requests.get(ninja.url + "/", timeout=30)
    assert root.status_code == 200
    assert live["name"] in root.text and test["name"] not in root.text
    assert "TEST MODE" not in root.text
    sandbox = requests.get(ninja.url + "/test/", timeout=30)
    assert test["name"] in sandbox.text and live["name"] not in sandbox.text
    assert "TEST MODE" in sandbox.text

    assert requests.get(product_url(ninja, live["slug"], "live"), timeout=30).status_code == 200
    assert requests.get(product_url(ninja, test["slug"], "test"), timeout=30).status_code == 200
    assert requests.get(product_url(ninja, live["slug"], "test"), timeout=30).status_code == 404
    assert requests.get(product_url(ninja, test["slug"], "live"), timeout=30).status_code == 404


def test_archived_product_leaves_the_shop(ninja):
    product = make_product(ninja.live, name=f"Old Scroll {secrets.token_hex(2)}",
                           type="account", delivery_text="x", stock=2)
    assert product["name"] in requests.get(ninja.url + "/", timeout=30).text
    response = ninja.live.delete(f"/v1/products/{product['id']}")
    assert response.status_code == 200, response.text
    assert product["name"] not in requests.get(ninja.url + "/", timeout=30).text
    page = requests.get(product_url(ninja, product["slug"], "live"), timeout=30)
    assert page.status_code == 404
    assert product["name"] not in page.text


def test_live_order_is_not_served_under_test(ninja):
    product, _ = key_product(ninja.live, 2, name=f"Live Key {secrets.token_hex(2)}")
    session = requests.Session()
    email = buyer("live")
    csrf = open_form(session, ninja, product["slug"], "live")
    response = post_checkout(session, ninja, product["slug"], csrf, "live", email=email)
    assert response.status_code == 303, error_messages(response.text)
    location = urljoin(ninja.url + "/", response.headers["Location"])
    match = ORDER_PATH.search(location)
    assert match and match.group(1) is None, location
    order_id, token = match.group(2), match.group(3)
    order = fetch(ninja.live, order_id)
    assert order["mode"] == "live" and order["customer_email"] == email

    page = session.get(location, timeout=30)
    assert page.status_code == 200
    assert_secure_html(page)
    assert "Waiting for your payment" in page_text(page.text)
    assert order["payment"]["address"] in page.text
    assert "TEST MODE" not in page.text
    assert "Simulate payment" not in page.text

    under_test = session.get(f"{ninja.url}/test/order/{order_id}?t={token}", timeout=30)
    assert under_test.status_code == 404
    assert order["payment"]["address"] not in under_test.text
    assert session.get(f"{ninja.url}/test/order/{order_id}/live?t={token}",
                       timeout=30).status_code == 404
    simulate = session.post(f"{ninja.url}/test/order/{order_id}/simulate-payment?t={token}",
                            data={"csrf_token": csrf}, allow_redirects=False,
                            timeout=30)
    assert simulate.status_code == 404
    assert fetch(ninja.live, order_id)["status"] == "awaiting_payment"


# --- 8. friendly errors -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/no-such-page", "/test/product/nope", "/product/nope"])
def test_not_found_is_a_friendly_page(server, path):
    response = requests.get(server.url + path, timeout=30)
    assert response.status_code == 404
    assert_secure_html(response)
    assert "Not found" in page_text(response.text)
    assert "Traceback" not in response.text
    links = re.findall(r'<a[^>]*href="([^"]*)"[^>]*>(.*?)</a>', response.text, re.S)
    assert any(href in ("/", "/test/") and "shop" in page_text(label).lower()
               for href, label in links), links


# --- 9. the goods on the order page, for every kind of product ----------------------------

SHIPPING = {"name": "Ada Buyer", "line1": "1 Main Street", "city": "Berlin",
            "postal_code": "10115", "country": "DE"}


@pytest.fixture(scope="module")
def dynamic_receiver(module_receiver):
    """A merchant's dynamic-delivery URL answering with the goods."""
    module_receiver.plan("goods", Reply(200, b"DYNAMIC-GOODS-7"))
    return module_receiver


def paid_order_of_kind(api, kind: str, dynamic_url: str) -> tuple[dict, str]:
    """A paid test-mode order of a new product of `kind`, once its goods are out; returns
    the order and the text its page must show."""
    order_extra = {}
    if kind == "license_key":
        product, pool = key_product(api, 1)
    else:
        fields = {"account": {"delivery_text": "login: ada / pass: 7x!"},
                  "subscription": {"delivery_text": "member area: ada", "interval": "month"},
                  "dynamic": {"dynamic_url": dynamic_url, "delivery_text": None},
                  "physical": {"stock": 3, "delivery_text": None},
                  "file_download": {"delivery_text": None}}[kind]
        product = make_product(api, type=kind, **fields)
    if kind == "file_download":
        response = api.put(f"/v1/products/{product['id']}/file?filename=guide.pdf",
                           data=b"%PDF-1.4 the guide",
                           headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text
    if kind == "physical":
        order_extra["shipping_address"] = SHIPPING
    order = place_order(api, product["id"], **order_extra)
    pay(api, order["id"])
    done = "delivering" if kind == "physical" else "completed"
    order = wait_for_status(api, order["id"], done)
    shown = {"license_key": lambda: order["delivery"]["keys"][0],
             "account": lambda: "login: ada / pass: 7x!",
             "subscription": lambda: "member area: ada",
             "dynamic": lambda: "DYNAMIC-GOODS-7",
             "physical": lambda: "1 Main Street",
             "file_download": lambda: "Download guide.pdf"}[kind]()
    return order, shown


@pytest.mark.parametrize("kind", ["license_key", "account", "file_download", "dynamic",
                                  "physical", "subscription"])
def test_the_order_page_shows_the_goods_of_every_kind(server, api, dynamic_receiver, kind):
    order, goods = paid_order_of_kind(api, kind, dynamic_receiver.url("goods"))
    url = order["payment"]["checkout_url"]
    page = requests.get(url, timeout=30)
    assert page.status_code == 200, page.text
    assert_secure_html(page)
    assert goods in page_text(page.text)
    assert "Simulate payment" not in page.text
    path, token = url.split("?t=")
    live = requests.get(f"{path}/live?t={token}", timeout=30)
    assert live.status_code == 200, live.text
    assert live.json()["status"] == order["status"]
    assert goods in page_text(live.json()["html"])


def test_an_account_buyer_sees_the_login_in_the_browser(server, api, browser):
    product = make_product(api, type="account", delivery_text="login: grace / pass: h0pper")
    context = browser.new_context(**DEVICES["phone"])
    try:
        page = context.new_page()
        watch = PageWatch(page)
        assert page.goto(product_url(server, product["slug"])).status == 200
        page.get_by_label("Email").fill(buyer("account"))
        page.get_by_role("button", name="Check out").click()
        page.wait_for_url(re.compile(r"/test/order/ord_\w+\?t="))
        page.get_by_role("button", name="Simulate payment").click()
        expect(page.locator("#order-status")).to_have_text("Delivered")
        expect(page.locator("main .delivery-text")).to_have_text("login: grace / pass: h0pper")
        assert page.locator("main ul.keys").count() == 0
        assert watch.errors == [] and watch.csp_violations() == []
    finally:
        context.close()


# --- 10. odd input is a form error, never a crash -----------------------------------------

@pytest.mark.parametrize("qty", ["²", "٣", "１", "1e3", "9" * 5000, "-1", "0x10", "1.5",
                                 "1 2", "\x00"])
def test_a_quantity_that_is_not_plain_digits_is_a_form_error(server, api, qty):
    product, _ = key_product(api, 2)
    email = buyer("qty")
    response = checkout(requests.Session(), server, product["slug"], email=email, qty=qty)
    assert response.status_code == 422, response.text[:500]
    assert_secure_html(response)
    assert any(message.startswith("Quantity") for message in error_messages(response.text))
    assert orders_of(api, email) == []
