"""The merchant dashboard (docs/dashboard.md, with `admin set-password`) through the real
server: the password set from the command line, sign-in in headless Chromium (cookie flags,
per-address limit, sign-out), CSRF on every form, API keys minted and revoked in the browser
and used against the API, products and license-key imports, refunds, webhook endpoints, the
live/test switch, payouts, and every page of an empty shop.

Forms sent twice (a double click, a reload) must run once: those checks post the same form,
with the same one-time `form_id`, twice with plain HTTP.

Screenshots of the main pages land in `tests/artifacts/` for a human to look at."""

from __future__ import annotations

import html
import re
import secrets
import signal
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError, expect
from requests.adapters import HTTPAdapter
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import GENEROUS_LIMITS, Server, wait_until
from support import Receiver

CONFIG = GENEROUS_LIMITS + "[jobs]\ntick_seconds = 1\n"
PASSWORD = "correct horse battery staple"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
SESSION_COOKIE = "sellix_session"
CSRF_MESSAGE = "The form has expired or was not sent by this site"
TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
ID = r"[0-9A-HJKMNP-TV-Z]{26}"
PAGES = ["/dashboard/", "/dashboard/products", "/dashboard/orders", "/dashboard/customers",
         "/dashboard/payouts", "/dashboard/licenses", "/dashboard/webhooks",
         "/dashboard/api-keys", "/dashboard/outbox"]
SIGN_INS_PER_MINUTE = 10
HOOK = "dashboard"  # the receiver's path the dashboard's endpoint is registered at

# Sign-ins are limited per address, successful ones included. The tests below sign in from
# 127.0.0.1 fewer than ten times in all; the limit itself is tried from other loopback
# addresses, which the server sees as other clients.


# --- fixtures -----------------------------------------------------------------------------

def start_shop(root: Path) -> Server:
    """A started server with a root key (`shop.admin`) and the dashboard password set."""
    shop = Server(root, CONFIG)
    try:
        shop.start()
        shop.admin = shop.client(shop.mint(name="root"))
        set_password(shop, PASSWORD)
    except BaseException:
        shop.stop(signal.SIGKILL)
        raise
    return shop


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The module's shop (overrides the shared one: it needs the password and fast jobs)."""
    shop = start_shop(tmp_path_factory.mktemp("dashboard"))
    yield shop
    shop.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def sessions_shop(tmp_path_factory):
    """A shop of its own for the tests that end every session (sign-out, a new password),
    so the module's shared sign-in stays valid whatever order the tests run in."""
    shop = start_shop(tmp_path_factory.mktemp("sessions"))
    yield shop
    shop.stop(signal.SIGKILL)


def sign_in_page(page, shop: Server) -> None:
    """Sign in through the browser form and land on the overview."""
    page.goto(shop.url + "/dashboard/login")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(shop.url + "/dashboard/")


@pytest.fixture(scope="module")
def signed_in(server, browser) -> dict:
    """The cookies of one browser sign-in, shared by the tests' pages (the mode a page shows
    lives in its own copy of the session, so one test switching modes leaves the others)."""
    context = browser.new_context(**DESKTOP)
    try:
        sign_in_page(context.new_page(), server)
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def page(browser, signed_in):
    """A signed-in dashboard page on a desktop; fails the test on a script error or a
    Content-Security-Policy violation."""
    context = browser.new_context(storage_state=signed_in,
                                  permissions=["clipboard-read", "clipboard-write"], **DESKTOP)
    page = context.new_page()
    watch = PageWatch(page)
    yield page
    context.close()
    assert not watch.errors, watch.errors
    assert not watch.csp_violations(), watch.csp_violations()


@pytest.fixture(scope="module")
def web(server) -> requests.Session:
    """A signed-in dashboard session with plain HTTP, to post forms exactly as sent."""
    session = requests.Session()
    response = sign_in(server, PASSWORD, session)
    assert response.status_code == 303, response.text
    return session


class PageWatch:
    """Console messages and script errors of one page."""

    def __init__(self, page):
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda message: self.console.append(
            f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def csp_violations(self) -> list[str]:
        return [line for line in self.console
                if "Content Security Policy" in line or "Refused to" in line]


# --- helpers ------------------------------------------------------------------------------

def set_password(shop: Server, password: str) -> None:
    result = shop.cli("admin", "set-password", input=password + "\n")
    assert result.returncode == 0, result.stderr


def sign_in(shop: Server, password: str, session: requests.Session | None = None,
            ) -> requests.Response:
    """Load the sign-in form (which sets the CSRF cookie) and post `password`; no redirects
    followed."""
    session = session or requests.Session()
    form = session.get(shop.url + "/dashboard/login", timeout=30)
    assert form.status_code == 200, form.text
    return session.post(shop.url + "/dashboard/login", timeout=30, allow_redirects=False,
                        data={**hidden_fields(form.text, ""), "password": password})


class FormCollector(HTMLParser):
    """Every form of a page: its action and hidden fields."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif (tag == "input" and self.forms and attributes.get("type") == "hidden"
              and attributes.get("name")):
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")


def hidden_fields(page_html: str, action: str) -> dict:
    """The hidden fields (CSRF token, form id) of the page's form posting to `action`."""
    collector = FormCollector()
    collector.feed(page_html)
    for found, fields in collector.forms:
        if found == action:
            return dict(fields)
    raise AssertionError(f"no form posts to {action!r}")


def flashes(page_html: str, category: str | None = None) -> list[str]:
    """The flash messages of a dashboard page, unescaped."""
    found = re.findall(r'<p class="flash (\w+)"[^>]*>(.*?)</p>', page_html, re.S)
    return [" ".join(html.unescape(text).split()) for kind, text in found
            if category is None or kind == category]


def post_form(session: requests.Session, shop: Server, page_path: str, action: str,
              **fields) -> tuple[dict, requests.Response]:
    """Load `page_path`, post its form `action` with `fields` (no redirects followed);
    returns the exact data sent, so it can be sent again, and the response."""
    loaded = session.get(shop.url + page_path, timeout=30)
    assert loaded.status_code == 200, loaded.text
    data = {**hidden_fields(loaded.text, action), **fields}
    assert data.get("form_id"), f"the form posting to {action} has no form_id"
    return data, session.post(shop.url + action, data=data, allow_redirects=False, timeout=30)


def json_body(response: requests.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def buyer() -> str:
    return f"buyer-{secrets.token_hex(4)}@example.com"


def key_product(client, keys: int = 3, price_cents: int = 4900, **fields) -> dict:
    """A license_key product with `keys` keys in its pool."""
    product = json_body(client.post("/v1/products", json={
        "name": fields.pop("name", f"Key {secrets.token_hex(3)}"), "type": "license_key",
        "price_cents": price_cents, "currency": "USD", **fields}), 201)
    if keys:
        json_body(client.post(f"/v1/products/{product['id']}/keys", json={
            "keys": [f"K-{secrets.token_hex(6)}" for _ in range(keys)]}), 201)
    return product


def paid_order(client, product_id: str) -> dict:
    """A test order for one unit, paid in full through the sandbox, once `paid_at` is set."""
    order = json_body(client.post("/v1/orders", json={
        "product_id": product_id, "qty": 1, "customer_email": buyer()}), 201)
    json_body(client.post(f"/v1/test_helpers/orders/{order['id']}/pay", json={}))

    def paid():
        current = json_body(client.get(f"/v1/orders/{order['id']}"))
        return current if current["paid_at"] else None
    return wait_until(paid, 20, what=f"order {order['id']} paid")


def refunds_of(client, order_id: str) -> list[dict]:
    return json_body(client.get(f"/v1/orders/{order_id}/refunds",
                                params={"limit": 100}))["data"]


def all_of(client, path: str) -> list[dict]:
    """Every object of a /v1 list, following cursors."""
    items, params = [], {"limit": 100}
    while True:
        listing = json_body(client.get(path, params=params))
        items += listing["data"]
        if not listing["has_more"]:
            return items
        params["cursor"] = listing["next_cursor"]


def keys_named(shop: Server, name: str) -> list[dict]:
    return [key for key in all_of(shop.admin, "/v1/api-keys") if key["name"] == name]


def money(cents: int, currency: str = "USD") -> str:
    return f"{cents / 100:,.2f} {currency}"


def api_error(response: requests.Response, field: str) -> tuple[str, str]:
    """The detail and the message for `field` of a 422 problem."""
    assert response.status_code == 422, response.text
    body = response.json()
    return body["detail"], body["errors"][field]


def session_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == SESSION_COOKIE), None)


class FromAddress(HTTPAdapter):
    """Connections made from another loopback address: another client to the server."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def sample_events_signed_by(receiver: Receiver, secret: str) -> list[dict]:
    """The synthetic test events the receiver got at HOOK that verify with `secret`
    (Standard Webhooks), each with its request headers."""
    found = []
    for request in receiver.requests(HOOK):
        headers = request.headers
        try:
            event = Webhook(secret).verify(request.body, headers)
        except WebhookVerificationError:
            continue
        if event["data"].get("test") is True:
            found.append({**event, "headers": headers})
    return found


# --- 1. the password, from the command line ------------------------------------------------

def stored_values(shop: Server) -> list[str]:
    return [str(value) for _, value in shop.query("SELECT name, value FROM settings")]


def password_hash(shop: Server) -> str:
    hashes = [value for value in stored_values(shop) if value.startswith("scrypt$")]
    assert len(hashes) == 1, "the settings table should hold one scrypt hash"
    return hashes[0]


def test_set_password_reads_one_line_and_stores_only_a_scrypt_hash(server):
    stored = password_hash(server)
    assert all(PASSWORD not in value for value in stored_values(server))
    database = b"".join(path.read_bytes() for path in server.database.parent.iterdir()
                        if path.name.startswith(server.database.name))
    assert PASSWORD.encode() not in database

    weak = server.cli("admin", "set-password", input="short\n")
    assert weak.returncode == 1, weak.stderr
    assert len(weak.stderr.strip().splitlines()) == 1, weak.stderr
    assert "Traceback" not in weak.stderr
    assert password_hash(server) == stored, "a refused password must change nothing"


def test_a_new_password_works_at_the_next_sign_in_while_the_server_runs(sessions_shop):
    server = sessions_shop
    new = f"a brand new passphrase {secrets.token_hex(4)}"
    before = password_hash(server)
    try:
        result = server.cli("admin", "set-password", input=f"{new}\nnot this second line\n")
        assert result.returncode == 0, result.stderr
        assert password_hash(server) != before
        assert all(new not in value for value in stored_values(server))
        assert sign_in(server, PASSWORD).status_code != 303, "the old password still works"
        response = sign_in(server, new)
        assert response.status_code == 303, response.text
        assert urlsplit(response.headers["Location"]).path.startswith("/dashboard")
        assert SESSION_COOKIE in response.cookies
    finally:
        set_password(server, PASSWORD)


# --- 2. signing in and out --------------------------------------------------------------------

def test_sign_in_in_the_browser(server, browser):
    context = browser.new_context(**DESKTOP)
    try:
        page = context.new_page()
        page.goto(server.url + "/dashboard")
        assert urlsplit(page.url).path == "/dashboard/login"
        expect(page.locator("input[name=password]")).to_be_visible()

        page.fill("input[name=password]", "wrong password, clearly")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        assert page.get_by_role("alert").inner_text().strip()
        assert urlsplit(page.url).path == "/dashboard/login"
        assert session_cookie(context) is None, "a wrong password must not open a session"
        page.goto(server.url + "/dashboard/products")
        assert urlsplit(page.url).path == "/dashboard/login"

        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/dashboard/products$"))  # back where it was going
        page.goto(server.url + "/dashboard")
        assert urlsplit(page.url).path == "/dashboard/"
        expect(page.locator("h1")).to_have_text("Overview")

        cookie = session_cookie(context)
        assert cookie is not None
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax"
        assert cookie["expires"] > time.time() + 60, "the session cookie should expire"
        assert cookie["expires"] < time.time() + 31 * 86400
    finally:
        context.close()


def test_sign_out_ends_the_session_in_the_browser(sessions_shop, browser):
    server = sessions_shop
    context = browser.new_context(**DESKTOP)
    try:
        page = context.new_page()
        sign_in_page(page, server)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/dashboard/login"))
        cookie = session_cookie(context)
        assert cookie is None or not cookie["value"], cookie
        for path in ("/dashboard/", "/dashboard/api-keys"):
            page.goto(server.url + path)
            assert urlsplit(page.url).path == "/dashboard/login", path
    finally:
        context.close()


def test_a_session_cookie_kept_from_before_sign_out_no_longer_works(sessions_shop):
    """Sign-out must end the session itself, not only drop the browser's copy of it: a
    cookie copied before (a shared computer, a stolen cookie) must not get back in."""
    server = sessions_shop
    session = requests.Session()
    assert sign_in(server, PASSWORD, session).status_code == 303
    kept = session.cookies.get(SESSION_COOKIE)
    page = session.get(server.url + "/dashboard/", timeout=30)
    assert page.status_code == 200
    signed_out = session.post(server.url + "/dashboard/logout", allow_redirects=False,
                              data=hidden_fields(page.text, "/dashboard/logout"), timeout=30)
    assert signed_out.status_code in (302, 303), signed_out.text
    assert session.get(server.url + "/dashboard/", allow_redirects=False,
                       timeout=30).status_code in (302, 303)

    replay = requests.get(server.url + "/dashboard/", cookies={SESSION_COOKIE: kept},
                          allow_redirects=False, timeout=30)
    assert replay.status_code in (302, 303), "the signed-out session still opens the dashboard"
    assert urlsplit(replay.headers["Location"]).path == "/dashboard/login"


def test_sign_in_attempts_are_limited_per_address(server):
    attacker = session_from("127.0.0.2")
    form = attacker.get(server.url + "/dashboard/login", timeout=30)
    data = hidden_fields(form.text, "")
    for attempt in range(SIGN_INS_PER_MINUTE):
        response = attacker.post(server.url + "/dashboard/login", timeout=30,
                                 allow_redirects=False,
                                 data={**data, "password": f"guess number {attempt}"})
        assert response.status_code == 401, (attempt, response.status_code)
    # the 11th within the minute is refused before the password is even looked at
    limited = attacker.post(server.url + "/dashboard/login", timeout=30, allow_redirects=False,
                            data={**data, "password": PASSWORD})
    assert limited.status_code == 429, limited.text
    assert limited.headers["Content-Type"].startswith("text/html")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert SESSION_COOKIE not in limited.cookies
    assert re.search(r"(?i)too many", limited.text)

    other = session_from("127.0.0.3")
    form = other.get(server.url + "/dashboard/login", timeout=30)
    response = other.post(server.url + "/dashboard/login", timeout=30, allow_redirects=False,
                          data={**hidden_fields(form.text, ""), "password": "another guess"})
    assert response.status_code == 401, "the limit is per address"


def dashboard_post_paths(tmp_path: Path, **ids: str) -> list[str]:
    """Every POST route of the dashboard, with `ids` (or made-up ids) filled in."""
    from sellix_lite.config import Config
    from sellix_lite.web.app import create_app

    app = create_app(Config(base_dir=tmp_path), "secret")
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/dashboard") and "POST" in rule.methods:
            path = rule.rule
            for argument in rule.arguments:
                path = path.replace(f"<{argument}>", ids.get(argument, f"x_{argument}"))
            paths.append(path)
    return paths


def test_every_post_without_the_csrf_token_is_refused(server, web, tmp_path):
    admin = server.admin
    product = key_product(admin)
    order = paid_order(admin, product["id"])
    endpoint = json_body(admin.post("/v1/webhooks", json={
        "url": "http://127.0.0.1:9/never", "events": ["*"]}), 201)
    key = json_body(admin.post("/v1/api-keys", json={
        "name": "csrf victim", "abilities": ["products:read"], "mode": "test"}), 201)
    paths = dashboard_post_paths(tmp_path, product_id=product["id"], order_id=order["id"],
                                 endpoint_id=endpoint["id"], key_id=key["id"])
    assert len(paths) >= 15 and "/dashboard/login" in paths
    fields = {"form_id": secrets.token_urlsafe(16), "name": "CSRF product", "type": "account",
              "price": "1.00", "currency": "USD", "amount": "1.00", "status": "disabled",
              "mode": "live", "password": PASSWORD, "url": "http://127.0.0.1:9/x",
              "events": "*", "abilities": "products:read", "chain": "tron", "asset": "USDT",
              "destination_address": TRON, "keys": "CSRF-KEY"}
    for path in paths:
        response = web.post(server.url + path, data=fields, allow_redirects=False, timeout=30)
        assert response.status_code == 400, f"{path}: {response.status_code}"
        assert CSRF_MESSAGE in html.unescape(response.text), path

    # a token from another browser (its cookie doesn't match) is refused too
    stolen = requests.get(server.url + "/dashboard/login", timeout=30)
    response = web.post(server.url + "/dashboard/products", allow_redirects=False, timeout=30,
                        data={**fields, **hidden_fields(stolen.text, "")})
    assert response.status_code == 400 and CSRF_MESSAGE in html.unescape(response.text)

    # nothing happened: still signed in, same mode, nothing created, revoked or refunded
    overview = web.get(server.url + "/dashboard/", allow_redirects=False, timeout=30)
    assert overview.status_code == 200 and "TEST mode" in overview.text
    assert not [p for p in all_of(admin, "/v1/products") if p["name"] == "CSRF product"]
    assert keys_named(server, "csrf victim")[0]["revoked_at"] is None
    assert json_body(admin.get(f"/v1/webhooks/{endpoint['id']}"))["status"] == "active"
    assert refunds_of(admin, order["id"]) == []
    assert json_body(admin.get(f"/v1/products/{product['id']}"))["stock"] == 2


# --- 3. API keys: minted in the browser, used with the API, revoked ---------------------------

def test_mint_a_key_in_the_browser_use_it_then_revoke_it(server, page):
    name = f"dashboard key {secrets.token_hex(3)}"
    page.goto(server.url + "/dashboard/api-keys")
    page.fill("input[name=name]", name)
    page.check("input[name=abilities][value='products:read']")
    page.check("input[name=abilities][value='products:write']")
    page.select_option("select[name=key_mode]", "test")
    page.get_by_role("button", name="Mint key").click()

    shown = page.locator("#new-secret")
    expect(shown).to_be_visible()
    secret = shown.inner_text().strip()
    assert re.fullmatch(r"sx_test_[0-9A-Za-z]{32,}", secret), secret
    copy = page.locator(".secret-once button.copy-button")
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    # the key works with the API, with exactly the abilities ticked
    client = server.client(secret)
    assert client.get("/v1/products").status_code == 200
    created = client.post("/v1/products", json={"name": "Made with a dashboard key",
                                                "type": "account", "price_cents": 100,
                                                "currency": "USD", "delivery_text": "x"})
    assert created.status_code == 201, created.text
    assert client.get("/v1/orders").status_code == 403
    [listed] = keys_named(server, name)
    assert sorted(listed["abilities"]) == ["products:read", "products:write"]
    assert listed["mode"] == "test" and listed["revoked_at"] is None

    # shown once: a reload (the form sent again) or the keys page never shows it again
    page.reload()
    assert secret not in page.content()
    assert urlsplit(page.url).path == "/dashboard/api-keys"
    page.goto(server.url + "/dashboard/api-keys")
    assert secret not in page.content()
    expect(page.locator("#new-secret")).to_have_count(0)
    assert len(keys_named(server, name)) == 1, "a reload minted another key"

    # revoke it in the browser: the next API request fails
    row = page.locator("tr", has_text=name)
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash").first).to_contain_text(listed["id"])
    expect(page.locator("tr", has_text=name)).to_contain_text("revoked")
    refused = client.get("/v1/products")
    assert refused.status_code == 401, refused.text
    assert keys_named(server, name)[0]["revoked_at"]


def test_a_mint_form_sent_twice_mints_one_key(server, web):
    name = f"double click {secrets.token_hex(3)}"
    data, first = post_form(web, server, "/dashboard/api-keys", "/dashboard/api-keys",
                            name=name, abilities=["products:read", "orders:read"],
                            key_mode="test")
    assert first.status_code == 200, first.text
    secret = re.search(r"sx_test_[0-9A-Za-z]{32,}", first.text).group(0)
    again = web.post(server.url + "/dashboard/api-keys", data=data, allow_redirects=False,
                     timeout=30)
    assert again.status_code == 303, again.text
    assert urlsplit(again.headers["Location"]).path == "/dashboard/api-keys"
    assert secret not in again.text
    after = web.get(server.url + again.headers["Location"], timeout=30)
    assert secret not in after.text
    assert len(keys_named(server, name)) == 1
    assert server.client(secret).get("/v1/orders").status_code == 200


def shown_after_going_back(page, secret: str) -> bool:
    """Press Back; whether the page it lands on shows `secret`. A browser that may not
    show the old page from its cache lands on its "confirm form resubmission" page."""
    try:
        page.go_back()
    except PlaywrightError as error:
        if "ERR_CACHE_MISS" not in str(error):
            raise
    page.wait_for_load_state()
    for _ in range(50):
        try:
            return secret in page.content()
        except PlaywrightError:  # still navigating
            page.wait_for_timeout(100)
    raise AssertionError("the page never settled after going back")


def test_pages_with_a_secret_are_not_kept_by_the_browser(server, page):
    """Shown once means once: after leaving the page with a new API key's secret or a new
    endpoint's signing secret, Back must not show it again from the browser's cache — so
    those pages are sent with `Cache-Control: no-store` (whether Chromium keeps a page
    without it varies from run to run, hence the header check too)."""
    def posted(path):
        return lambda response: (response.request.method == "POST"
                                 and urlsplit(response.url).path == path)

    page.goto(server.url + "/dashboard/api-keys")
    page.fill("input[name=name]", f"back button {secrets.token_hex(3)}")
    page.check("input[name=abilities][value='products:read']")
    with page.expect_response(posted("/dashboard/api-keys")) as minted:
        page.get_by_role("button", name="Mint key").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("sx_test_")
    page.goto(server.url + "/dashboard/products")
    assert not shown_after_going_back(page, secret), "Back shows the API key's secret again"

    page.goto(server.url + "/dashboard/webhooks")
    form = page.locator("form[action='/dashboard/webhooks']")
    form.locator("input[name=url]").fill(f"http://127.0.0.1:9/back/{secrets.token_hex(3)}")
    with page.expect_response(posted("/dashboard/webhooks")) as registered:
        form.get_by_role("button", name="Register endpoint").click()
    signing = page.locator("#signing-secret").inner_text().strip()
    assert signing.startswith("whsec_")
    page.goto(server.url + "/dashboard/products")
    assert not shown_after_going_back(page, signing), "Back shows the signing secret again"

    for what, response in (("API key", minted.value), ("signing secret", registered.value)):
        cache = response.headers.get("cache-control", "")
        assert "no-store" in cache, f"the page with the new {what} may be cached: {cache!r}"


# --- 4. products and license keys ----------------------------------------------------------

def test_create_a_product_and_import_keys(server, page):
    page.goto(server.url + "/dashboard/products")
    form = page.locator("form[action='/dashboard/products']")
    form.locator("input[name=name]").fill("Dash Key")
    form.locator("select[name=type]").select_option("license_key")
    form.locator("input[name=price]").fill("49.00")
    form.locator("input[name=currency]").fill("USD")
    form.get_by_role("button", name="Create product").click()
    page.wait_for_url(re.compile(rf"/dashboard/products/prod_{ID}$"))
    expect(page.locator("h1")).to_have_text("Dash Key")
    product_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    product = json_body(server.admin.get(f"/v1/products/{product_id}"))
    assert (product["name"], product["type"], product["price_cents"], product["currency"],
            product["stock"]) == ("Dash Key", "license_key", 4900, "USD", 0)

    keys = [f"DASH-{secrets.token_hex(5).upper()}" for _ in range(6)]
    page.fill("textarea[name=keys]", "\n".join(keys[:3]))
    page.set_input_files("input[name=keys_file]", files=[{
        "name": "more-keys.csv", "mimeType": "text/csv",
        "buffer": f"{keys[3]},batch 7,2026-01-01\r\n{keys[4]},batch 7,2026-01-01\r\n".encode()}])
    page.get_by_role("button", name="Import keys").click()
    flash = page.locator(".flash.info")
    expect(flash).to_contain_text(re.compile(r"imported 5\b", re.I))
    expect(flash).to_contain_text(re.compile(r"\b0 duplicates?\b"))
    assert json_body(server.admin.get(f"/v1/products/{product_id}"))["stock"] == 5
    expect(page.locator("p.muted").first).to_contain_text("stock 5")

    # a key already in the pool is reported as a duplicate, not added
    page.fill("textarea[name=keys]", f"{keys[0]}\n{keys[5]}\n")
    page.get_by_role("button", name="Import keys").click()
    expect(flash).to_contain_text(re.compile(r"imported 1\b", re.I))
    expect(flash).to_contain_text(re.compile(r"\b1 duplicates?\b"))
    assert json_body(server.admin.get(f"/v1/products/{product_id}"))["stock"] == 6


def test_a_quoted_csv_column_is_imported_as_the_key_itself(server, web):
    """A .csv file is CSV: a quoted first column ("ABC-1",note — what spreadsheets export)
    is the key ABC-1, quotes off."""
    product = key_product(server.admin, 0)
    path = f"/dashboard/products/{product['id']}"
    loaded = web.get(server.url + path, timeout=30)
    response = web.post(server.url + path + "/keys", allow_redirects=False, timeout=30,
                        data=hidden_fields(loaded.text, path + "/keys"),
                        files={"keys_file": ("export.csv", b'"QUOTED-1","a, note"\r\n'
                                             b'"QUOTED-2",other\r\n', "text/csv")})
    assert response.status_code == 303, response.text
    # sell both keys and look at what was delivered
    delivered = []
    for _ in range(2):
        order = paid_order(server.admin, product["id"])

        def keys_of(order_id=order["id"]):
            current = json_body(server.admin.get(f"/v1/orders/{order_id}"))
            return current["delivery"].get("keys")
        delivered += wait_until(keys_of, 20, what="delivered keys")
    assert sorted(delivered) == ["QUOTED-1", "QUOTED-2"]


def test_invalid_product_input_shows_the_apis_message(server, page):
    name = f"Bad price {secrets.token_hex(3)}"
    expected = api_error(server.admin.post("/v1/products", json={
        "name": name, "type": "license_key", "price_cents": "abc", "currency": "USD"}),
        "price_cents")
    page.goto(server.url + "/dashboard/products")
    form = page.locator("form[action='/dashboard/products']")
    form.locator("input[name=name]").fill(name)
    form.locator("select[name=type]").select_option("license_key")
    form.locator("input[name=price]").fill("abc")
    form.get_by_role("button", name="Create product").click()
    page.wait_for_url(re.compile(r"/dashboard/products$"))
    message = page.locator(".flash.error").inner_text()
    assert expected[0] in message and expected[1] in message, (message, expected)
    assert not [p for p in all_of(server.admin, "/v1/products") if p["name"] == name]


# --- 5. refunds -------------------------------------------------------------------------------

def test_refund_part_of_an_order(server, page, web):
    admin = server.admin
    order = paid_order(admin, key_product(admin)["id"])
    order_path = f"/dashboard/orders/{order['id']}"
    refund_action = order_path + "/refund"

    page.goto(server.url + order_path)
    form = page.locator(f"form[action='{refund_action}']")
    form.locator("input[name=amount]").fill("10.00")
    form.locator("select[name=reason]").select_option("requested_by_buyer")
    form.locator("input[name=note]").fill("buyer changed their mind")
    form.get_by_role("button", name="Refund").click()
    page.wait_for_url(re.compile(rf"{order_path}$"))
    expect(page.locator(".flash.info")).to_contain_text("processing")

    def succeeded():
        page.reload()
        statuses = page.locator(".refund-status").all_inner_texts()
        return statuses == ["succeeded"]
    wait_until(succeeded, 20, interval=0.5, what="the refund to succeed on the order page")
    expect(page.locator("#refunded")).to_have_text(money(1000))
    [refund] = refunds_of(admin, order["id"])
    assert (refund["amount_cents"], refund["reason"], refund["note"], refund["status"]) == (
        1000, "requested_by_buyer", "buyer changed their mind", "succeeded")
    assert json_body(admin.get(f"/v1/orders/{order['id']}"))["refunded_cents"] == 1000

    # the same form sent twice refunds once
    data, first = post_form(web, server, order_path, refund_action, amount="5.00",
                            reason="duplicate")
    assert first.status_code == 303, first.text
    again = web.post(server.url + refund_action, data=data, allow_redirects=False, timeout=30)
    assert again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert [r["amount_cents"] for r in refunds_of(admin, order["id"])] == [500, 1000]

    # more than is left: the API's message, nothing refunded
    expected = api_error(admin.post(f"/v1/orders/{order['id']}/refund",
                                    json={"amount_cents": 4000},
                                    headers={"Idempotency-Key": secrets.token_hex(8)}),
                         "amount_cents")
    page.goto(server.url + order_path)
    form.locator("input[name=amount]").fill("40.00")
    form.get_by_role("button", name="Refund").click()
    message = page.locator(".flash.error").inner_text()
    assert expected[0] in message and expected[1] in message, (message, expected)
    assert len(refunds_of(admin, order["id"])) == 2


# --- 6. webhooks ------------------------------------------------------------------------------

def test_register_test_and_manage_a_webhook(server, page, receiver):
    page.goto(server.url + "/dashboard/webhooks")
    form = page.locator("form[action='/dashboard/webhooks']")
    form.locator("input[name=url]").fill(receiver.url(HOOK))
    form.locator("input[name=events][value='*']").check()
    form.get_by_role("button", name="Register endpoint").click()
    shown = page.locator("#signing-secret")
    expect(shown).to_be_visible()
    secret = shown.inner_text().strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", secret), secret
    expect(page.get_by_role("button", name="Copy", exact=True)).to_be_visible()
    [endpoint] = [w for w in all_of(server.admin, "/v1/webhooks") if w["url"] == receiver.url(HOOK)]
    assert endpoint["events"] == ["*"] and endpoint["status"] == "active"
    endpoint_path = f"/dashboard/webhooks/{endpoint['id']}"

    # a test event, signed with that secret
    page.get_by_role("button", name="Send test event").click()
    page.wait_for_url(re.compile(rf"{endpoint_path}$"))
    message = page.locator(".flash").first.inner_text()
    assert re.search(r"(?i)\bdelivered\b", message) and "not delivered" not in message, message
    test_events = wait_until(lambda: sample_events_signed_by(receiver, secret), 20,
                             what="the test event")
    assert test_events[0]["id"] == test_events[0]["headers"]["webhook-id"]
    assert secret not in page.content(), "the secret is shown once only"

    # a real event shows up in the delivery log
    product = json_body(server.admin.post("/v1/products", json={
        "name": "Hooked", "type": "account", "price_cents": 100, "currency": "USD",
        "delivery_text": "x"}), 201)

    def product_event():
        for request in receiver.requests(HOOK):
            event = Webhook(secret).verify(request.body, request.headers)
            if (event["type"] == "product.created"
                    and event["data"]["object"]["id"] == product["id"]):
                return event
        return None
    created = wait_until(product_event, 20, what="the product.created delivery")

    def logged():
        page.reload()
        row = page.locator("tr", has_text=created["id"])
        return row.count() == 1 and "product.created" in row.inner_text()
    wait_until(logged, 20, interval=0.5, what="the delivery in the endpoint's log")

    # rotating shows a new secret, which signs the next delivery
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.locator("#signing-secret")).to_be_visible()
    rotated = page.locator("#signing-secret").inner_text().strip()
    assert rotated.startswith("whsec_") and rotated != secret
    page.get_by_role("button", name="Send test event").click()
    page.wait_for_url(re.compile(rf"{endpoint_path}$"))
    wait_until(lambda: len(sample_events_signed_by(receiver, rotated)) == 1, 20,
               what="a test event signed with the new secret")

    # disable, then re-enable
    page.get_by_role("button", name="Disable").click()
    expect(page.locator(".endpoint-status")).to_have_text("disabled")
    assert json_body(server.admin.get(f"/v1/webhooks/{endpoint['id']}"))["status"] == "disabled"
    page.get_by_role("button", name="Re-enable").click()
    expect(page.locator(".endpoint-status")).to_have_text("active")
    assert json_body(server.admin.get(f"/v1/webhooks/{endpoint['id']}"))["status"] == "active"


# --- 7. live and test -------------------------------------------------------------------------

def test_the_mode_switch_changes_what_is_listed(server, page):
    live = server.client(server.mint(mode="live", name="live"))
    tag = secrets.token_hex(3)
    for client, name in ((live, f"Live only {tag}"), (server.admin, f"Test only {tag}")):
        json_body(client.post("/v1/products", json={
            "name": name, "type": "account", "price_cents": 500, "currency": "USD",
            "delivery_text": "x"}), 201)
    table = page.locator("table.dash-table")

    page.goto(server.url + "/dashboard/products")
    expect(page.locator(".mode-label")).to_have_text("TEST mode")
    expect(table).to_contain_text(f"Test only {tag}")
    expect(table).not_to_contain_text(f"Live only {tag}")

    page.get_by_role("button", name="Switch to live").click()
    page.wait_for_url(re.compile(r"/dashboard/products$"))
    expect(page.locator(".mode-label")).to_have_text("LIVE mode")
    expect(page.locator(".test-banner")).to_have_count(0)
    expect(table).to_contain_text(f"Live only {tag}")
    expect(table).not_to_contain_text(f"Test only {tag}")
    for path in PAGES:  # the switch is on every page, and the mode stays
        page.goto(server.url + path)
        expect(page.locator(".mode-label")).to_have_text("LIVE mode")
        expect(page.get_by_role("button", name="Switch to test")).to_be_visible()

    page.goto(server.url + "/dashboard/orders")
    page.get_by_role("button", name="Switch to test").click()
    page.wait_for_url(re.compile(r"/dashboard/orders$"))
    expect(page.locator(".mode-label")).to_have_text("TEST mode")
    expect(page.locator(".test-banner")).to_be_visible()
    page.goto(server.url + "/dashboard/products")
    expect(table).not_to_contain_text(f"Live only {tag}")


# --- 8. pages of an empty shop; payouts ------------------------------------------------------

def test_every_page_renders_for_an_empty_shop(make_server):
    shop = make_server(CONFIG)
    set_password(shop, PASSWORD)
    session = requests.Session()
    assert sign_in(shop, PASSWORD, session).status_code == 303
    for mode in ("test", "live"):
        for path in PAGES:
            response = session.get(shop.url + path, allow_redirects=False, timeout=30)
            assert response.status_code == 200, (mode, path, response.status_code)
            assert response.headers["Content-Type"].startswith("text/html")
            assert f"{mode.upper()} mode" in response.text, (mode, path)
            assert hidden_fields(response.text, "/dashboard/mode"), (mode, path)
            assert not flashes(response.text, "error"), (mode, path)
        switched = session.post(shop.url + "/dashboard/mode", allow_redirects=False, timeout=30,
                                data={**hidden_fields(response.text, "/dashboard/mode"),
                                      "mode": "live", "back": "/dashboard/"})
        assert switched.status_code == 303


def test_payouts_page_shows_the_balance_and_the_apis_errors(server, page):
    admin = server.admin
    paid_order(admin, key_product(admin)["id"])
    balance = json_body(admin.get("/v1/balance"))
    assert balance["available_cents"] >= 4900

    page.goto(server.url + "/dashboard/payouts")
    expect(page.locator("#available")).to_have_text(money(balance["available_cents"]))

    too_much = balance["available_cents"] + 10000
    expected = api_error(admin.post("/v1/payouts", headers={
        "Idempotency-Key": secrets.token_hex(8)}, json={
        "chain": "tron", "asset": "USDT", "amount_cents": too_much,
        "destination_address": TRON}), "amount_cents")
    form = page.locator("form[action='/dashboard/payouts']")
    form.locator("select[name=chain]").select_option("tron")
    form.locator("input[name=asset]").fill("USDT")
    form.locator("input[name=amount]").fill(f"{too_much / 100:.2f}")
    form.locator("input[name=destination_address]").fill(TRON)
    form.get_by_role("button", name="Send payout").click()
    message = page.locator(".flash.error").inner_text()
    assert expected[0] in message and expected[1] in message, (message, expected)
    assert all_of(admin, "/v1/payouts") == []

    form.locator("input[name=amount]").fill("1.00")
    form.locator("input[name=destination_address]").fill(TRON)
    form.get_by_role("button", name="Send payout").click()
    expect(page.locator(".flash.info")).to_contain_text("queued")
    [payout] = all_of(admin, "/v1/payouts")
    assert (payout["amount_cents"], payout["destination_address"]) == (100, TRON)
    expect(page.locator("#available")).to_have_text(money(balance["available_cents"] - 100))


# --- 9. screenshots ---------------------------------------------------------------------------

def test_screenshots_of_the_main_pages(server, page, artifacts):
    order = paid_order(server.admin, key_product(server.admin)["id"])
    shots = {"overview": "/dashboard/", "products": "/dashboard/products",
             "order": f"/dashboard/orders/{order['id']}", "api-keys": "/dashboard/api-keys"}
    for name, path in shots.items():
        response = page.goto(server.url + path)
        assert response.status == 200, path
        expect(page.locator("h1")).to_be_visible()
        target = artifacts / f"dashboard-desktop-{name}.png"
        page.screenshot(path=str(target), full_page=True)
        assert target.stat().st_size > 1000


@pytest.mark.parametrize("kind", ["account", "subscription"])
def test_the_order_page_of_an_order_without_keys(server, web, kind):
    product = json_body(server.admin.post("/v1/products", json={
        "name": f"Login {secrets.token_hex(3)}", "type": kind, "price_cents": 900,
        "currency": "USD", "delivery_text": "login: ada / pass: 7x!",
        **({"interval": "month"} if kind == "subscription" else {})}), 201)
    order = paid_order(server.admin, product["id"])
    page = web.get(f"{server.url}/dashboard/orders/{order['id']}", timeout=30)
    assert page.status_code == 200, page.text
    assert "login: ada / pass: 7x!" in html.unescape(page.text)


# --- odd input is the API's message or a 400, never a crash ---------------------------------

@pytest.mark.parametrize("field,value", [
    ("stock", "²"), ("stock", "٣"), ("stock", "9" * 5000), ("price", "Infinity"),
    ("price", "sNaN"), ("price", "NaN"), ("price", "1e999999"), ("price", "٣.00"),
    ("price", "²")])
def test_a_number_that_is_not_plain_digits_is_the_apis_message(server, web, field, value):
    name = f"Odd {field} {secrets.token_hex(3)}"
    fields = {"name": name, "type": "account", "price": "1.00", "currency": "USD",
              "delivery_text": "x", field: value}
    _, response = post_form(web, server, "/dashboard/products", "/dashboard/products", **fields)
    assert response.status_code == 303, response.text
    shown = web.get(server.url + response.headers["Location"], timeout=30)
    assert flashes(shown.text, "error"), shown.text
    assert not [p for p in all_of(server.admin, "/v1/products") if p["name"] == name]


@pytest.mark.parametrize("value", ["sNaN", "Infinity", "²", "1e999999"])
def test_a_refund_or_payout_amount_that_is_not_plain_digits_is_refused(server, web, value):
    order = paid_order(server.admin, key_product(server.admin)["id"])
    order_path = f"/dashboard/orders/{order['id']}"
    _, response = post_form(web, server, order_path, order_path + "/refund", amount=value)
    assert response.status_code == 303, response.text
    assert flashes(web.get(server.url + order_path, timeout=30).text, "error")
    assert refunds_of(server.admin, order["id"]) == []
    _, response = post_form(web, server, "/dashboard/payouts", "/dashboard/payouts",
                            chain="tron", asset="USDT", destination_address=TRON,
                            amount=value)
    assert response.status_code == 303, response.text


@pytest.mark.parametrize("target", ["/dashboard/\r\nX-Injected: 1", "/dashboard/\nx",
                                    "/dashboard/\rx"])
def test_a_line_break_in_a_redirect_target_is_400(server, web, target):
    page_html = web.get(server.url + "/dashboard/", timeout=30).text
    response = web.post(server.url + "/dashboard/mode", allow_redirects=False, timeout=30,
                        data={**hidden_fields(page_html, "/dashboard/mode"), "mode": "test",
                              "back": target})
    assert response.status_code == 400, response.text
    assert "X-Injected" not in response.headers
    session = requests.Session()
    form = session.get(server.url + "/dashboard/login", timeout=30)
    response = session.post(server.url + "/dashboard/login", params={"next": target},
                            data={**hidden_fields(form.text, ""), "password": PASSWORD},
                            allow_redirects=False, timeout=30)
    assert response.status_code == 400, response.text


# --- a dynamic product's signing secret --------------------------------------------------------

def shown_secret(page_html: str) -> str | None:
    match = re.search(r'<code class="secret" id="dynamic-secret">([^<]+)</code>', page_html)
    return match and html.unescape(match.group(1))


def test_a_dynamic_products_secret_is_shown_at_creation_and_rotation_only(server, web):
    name = f"Code {secrets.token_hex(3)}"
    fields = {"name": name, "type": "dynamic", "price": "5.00", "currency": "USD",
              "dynamic_url": "https://example.com/deliver"}
    sent, created = post_form(web, server, "/dashboard/products", "/dashboard/products",
                              **fields)
    assert created.status_code == 200, created.text
    (product,) = [p for p in all_of(server.admin, "/v1/products") if p["name"] == name]

    def stored() -> str:
        return server.query("SELECT dynamic_secret FROM products WHERE id = ?",
                            (product["id"],))[0][0]

    first = shown_secret(created.text)
    assert first and first == stored()
    again = web.post(server.url + "/dashboard/products", data=sent, allow_redirects=False,
                     timeout=30)
    assert again.status_code == 303 and shown_secret(again.text) is None  # sent twice: once
    product_path = f"/dashboard/products/{product['id']}"
    assert shown_secret(web.get(server.url + product_path, timeout=30).text) is None

    _, rotated = post_form(web, server, product_path, product_path + "/rotate-dynamic-secret")
    second = shown_secret(rotated.text)
    assert rotated.status_code == 200 and second and second != first
    assert second == stored()
    assert shown_secret(web.get(server.url + product_path, timeout=30).text) is None
