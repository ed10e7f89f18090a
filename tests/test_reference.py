"""The API reference page `GET /docs` (docs/api.md) in headless Chromium against the real
server: security headers and a clean load, the intro sections, resources in the seed's
order, one article per operation of `/v1/openapi.json`, "Try it" with a pasted test key
(a GET, a POST with an edited body, a GET with a path parameter), the refusal of live keys
and of an empty key without any request being sent, and the in-browser webhook verifier
checked against a real signed delivery captured from the server.

Screenshots of the page (desktop and phone) land in `tests/artifacts/`."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from sellix_lite import webhook_signatures

from conftest import mint_via_api, wait_until

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}
RESOURCE_ORDER = ["Products", "Orders", "Coupons", "Customers", "Licenses", "Payouts",
                  "Webhooks", "API keys", "Events", "Subscriptions", "Reports", "Blacklist",
                  "Test helpers"]
# Every problem slug with its status (docs/api.md, Errors).
ERROR_SLUGS = {"invalid_request": 400, "unauthenticated": 401, "forbidden_scope": 403,
               "not_found": 404, "method_not_allowed": 405, "conflict": 409,
               "payload_too_large": 413, "unsupported_media_type": 415, "unprocessable": 422,
               "rate_limited": 429, "server_error": 500}
TIMEOUT_MS = 10_000


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec(server) -> dict:
    response = requests.get(server.url + "/v1/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def context(browser):
    """A fresh browser context (so no key lingers in sessionStorage between tests)."""
    ctx = browser.new_context(**DESKTOP)
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


class PageWatch:
    """Console messages, script errors and requests of one page."""

    def __init__(self, page):
        self.console: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.bad_responses: list[str] = []
        page.on("console", lambda message: self.console.append(
            f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(
            f"{request.method} {request.url}"))
        page.on("response", lambda response: response.status >= 400 and
                self.bad_responses.append(f"{response.status} {response.url}"))

    def console_errors(self) -> list[str]:
        return [line for line in self.console if line.startswith("error:")]

    def csp_violations(self) -> list[str]:
        return [line for line in self.console
                if "Content Security Policy" in line or "Refused to" in line]

    def api_requests(self) -> list[str]:
        return [line for line in self.requests if "/v1" in line]


def failed_loads(server, since: int) -> list[str]:
    """The requests the server answered with 4xx/5xx since `since` characters of its log."""
    return re.findall(r"(\w+ \S+ [45]\d\d) ", server.output()[since:])


def open_docs(context, server):
    page = context.new_page()
    watch = PageWatch(page)
    response = page.goto(server.url + "/docs", wait_until="load")
    assert response is not None and response.status == 200
    return page, watch


def article(page, method: str, path: str):
    return page.locator(f'article.endpoint[data-method="{method}"][data-path="{path}"]')


def paste_key(page, key: str) -> None:
    page.fill("#docs-key", key)


def try_it(page, method: str, path: str) -> dict:
    """Click "Try it" on one operation and wait for its result; returns what it shows."""
    endpoint = article(page, method, path)
    result = endpoint.locator(".result")
    endpoint.locator("button.try").click()
    result.wait_for(state="visible")
    wait_until(lambda: endpoint.locator(".result-status").text_content().strip(),
               timeout=10, what=f"the result of {method} {path}")
    return {
        "status": endpoint.locator(".result-status").text_content().strip(),
        "headers": endpoint.locator(".result-headers").text_content(),
        "body": endpoint.locator(".result-body").text_content(),
    }


def header_lines(text: str) -> dict:
    headers = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


# --- the page itself ------------------------------------------------------------------------

def test_every_operation_is_rendered_whatever_it_answers_with(client):
    """In process: the page renders each operation, the CSV export's answer included."""
    response = client.get("/docs")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    page = response.get_data(as_text=True)
    assert "/v1/orders/export.csv" in page and "text/csv" in page


def test_docs_headers_are_secure(server):
    response = requests.get(server.url + "/docs", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers.get("Content-Security-Policy")
    assert policy, "no Content-Security-Policy on /docs"
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    assert "'self'" in directives.get("script-src", []), policy
    assert "'unsafe-inline'" not in directives["script-src"], policy
    assert "'unsafe-eval'" not in directives["script-src"], policy
    assert directives.get("frame-ancestors") == ["'none'"], policy
    assert response.headers.get("X-Content-Type-Options", "").lower() == "nosniff"
    assert response.headers.get("Referrer-Policy", "").strip()
    assert "<script>" not in response.text.replace(" ", "").lower()


def test_docs_load_cleanly_with_intro_sections(context, server):
    log_start = len(server.output())
    page, watch = open_docs(context, server)
    page.wait_for_load_state("networkidle")
    assert watch.errors == [], watch.errors
    assert watch.console_errors() == [], (watch.console, failed_loads(server, log_start))
    assert watch.csp_violations() == [], watch.console
    assert watch.bad_responses == [], watch.bad_responses

    auth = page.locator("#authentication").inner_text()
    assert "Authentication" in auth
    assert "sx_live_" in auth and "sx_test_" in auth
    assert "Authorization: Bearer" in auth

    rows = page.locator("#errors table tr").all()
    table = {}
    for row in rows[1:]:
        cells = [cell.inner_text().strip() for cell in row.locator("td").all()]
        table[cells[1]] = int(cells[0])
    assert table == ERROR_SLUGS

    limits = page.locator("#limits").inner_text()
    assert "Rate limits and idempotency" in limits
    for word in ("RateLimit-Policy", "RateLimit", "Retry-After", "Idempotency-Key",
                 "Idempotent-Replayed"):
        assert word in limits, word


def test_every_operation_has_an_article_in_resource_order(context, server, spec):
    page, _ = open_docs(context, server)
    sections = page.evaluate("""() => Array.from(document.querySelectorAll("section.resource"))
        .map(section => ({
          title: section.querySelector("h2").textContent.trim(),
          articles: Array.from(section.querySelectorAll("article.endpoint")).map(a => ({
            method: a.dataset.method, path: a.dataset.path,
            shownMethod: a.querySelector("h3 .method").textContent.trim(),
            shownPath: a.querySelector("h3 .path").textContent.trim(),
            summary: (a.querySelector(".summary") || {textContent: ""}).textContent.trim(),
            params: Array.from(a.querySelectorAll("table.params td:first-child code"))
              .map(c => c.textContent.trim()),
            inputs: Array.from(a.querySelectorAll("input.param")).map(i => i.dataset.name),
            example: (a.querySelector("pre.example") || {textContent: null}).textContent,
            body: a.querySelector("textarea.body") ? a.querySelector("textarea.body").value
                                                   : null,
            tryIt: !!a.querySelector("button.try"),
          })),
        }))""")
    assert [section["title"] for section in sections] == RESOURCE_ORDER

    shown = {}
    for section in sections:
        for item in section["articles"]:
            key = (item["method"], item["path"])
            assert key not in shown, f"{key} appears twice"
            shown[key] = dict(item, tag=section["title"])

    expected = {(method.upper(), path): operation
                for path, methods in spec["paths"].items()
                for method, operation in methods.items()}
    assert set(shown) == set(expected), (set(expected) ^ set(shown))
    for (method, path), operation in expected.items():
        item = shown[(method, path)]
        where = f"{method} {path}"
        assert item["tag"] == operation["tags"][0], where
        assert item["shownMethod"] == method, where
        assert item["shownPath"] == path, where
        assert item["summary"] == operation["summary"], where
        names = [parameter["name"] for parameter in operation["parameters"]]
        assert item["params"] == names, where
        for parameter in operation["parameters"]:
            if parameter["in"] in ("path", "query"):
                assert parameter["name"] in item["inputs"], (where, parameter["name"])
        assert item["example"] is not None, f"no example response for {where}"
        answer = next(iter(operation["responses"].values()))["content"]
        if "application/json" in answer:
            json.loads(item["example"])
        else:  # a streamed file (the CSV export): its media type
            assert item["example"] == next(iter(answer)), where
        content = operation.get("requestBody", {}).get("content", {})
        if method in ("POST", "PATCH") and "application/json" in content:
            assert item["body"] is not None, f"no editable body for {where}"
            assert isinstance(json.loads(item["body"]), dict), where
            assert item["tryIt"], where
        elif content:
            assert item["body"] is None, where  # a file upload: no JSON body to edit
        else:
            assert item["body"] is None, where
            assert item["tryIt"], where


# --- Try it ---------------------------------------------------------------------------------

def test_try_it_runs_get_post_and_path_parameter(context, server):
    key = mint_via_api(server)
    api = server.client(key)
    page, watch = open_docs(context, server)
    paste_key(page, key)

    listed = try_it(page, "GET", "/v1/products")
    assert listed["status"].startswith("200"), listed
    body = json.loads(listed["body"])
    assert body["object"] == "list"
    headers = header_lines(listed["headers"])
    assert headers.get("content-type", "").startswith("application/json"), listed["headers"]
    assert "ratelimit" in headers and "ratelimit-policy" in headers, listed["headers"]
    assert '"reads"' in headers["ratelimit-policy"], listed["headers"]
    assert headers.get("x-request-id", "").startswith("req_"), listed["headers"]

    create = article(page, "POST", "/v1/products")
    create.locator("textarea.body").fill(json.dumps({
        "name": "Docs Widget", "type": "account", "price_cents": 500, "currency": "USD"}))
    created = try_it(page, "POST", "/v1/products")
    assert created["status"].startswith("201"), created
    product = json.loads(created["body"])
    assert product["name"] == "Docs Widget"
    assert product["id"].startswith("prod_")
    assert '"writes"' in header_lines(created["headers"]).get("ratelimit-policy", "")

    stored = api.get(f"/v1/products/{product['id']}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["name"] == "Docs Widget"
    assert stored.json()["type"] == "account"
    assert stored.json()["price_cents"] == 500
    assert stored.json()["currency"] == "USD"
    assert stored.json()["mode"] == "test"

    fetch = article(page, "GET", "/v1/products/{product_id}")
    fetch.locator('input.param[data-name="product_id"]').fill(product["id"])
    fetched = try_it(page, "GET", "/v1/products/{product_id}")
    assert fetched["status"].startswith("200"), fetched
    assert json.loads(fetched["body"])["id"] == product["id"]
    assert json.loads(fetched["body"])["name"] == "Docs Widget"
    assert any(f"GET {server.url}/v1/products/{product['id']}" == line
               for line in watch.requests), watch.requests

    assert watch.errors == [], watch.errors
    assert watch.csp_violations() == [], watch.console


def test_try_it_refuses_live_and_missing_keys_without_a_request(context, server):
    live = server.mint(mode="live", name="live docs key")
    assert live.startswith("sx_live_")
    page, watch = open_docs(context, server)
    message = page.locator("#docs-key-message")

    paste_key(page, live)
    endpoint = article(page, "GET", "/v1/products")
    endpoint.locator("button.try").click()
    wait_until(lambda: message.is_visible() or watch.api_requests(), timeout=10,
               what="the live-key refusal")
    assert watch.api_requests() == [], "a live key was sent: " + str(watch.api_requests())
    text = message.inner_text()
    assert "sx_test_" in text and "live" in text.lower(), text
    post = article(page, "POST", "/v1/products")
    post.locator("button.try").click()
    time.sleep(0.5)  # give a wrongly sent request time to show up
    assert watch.api_requests() == [], watch.api_requests()
    assert endpoint.locator(".result").is_hidden()
    assert post.locator(".result").is_hidden()

    paste_key(page, "")
    endpoint.locator("button.try").click()
    wait_until(lambda: message.is_visible() and "live" not in message.inner_text().lower(),
               timeout=10, what="the missing-key message")
    text = message.inner_text()
    assert "sx_test_" in text, text
    time.sleep(0.3)
    assert watch.api_requests() == [], watch.api_requests()
    assert endpoint.locator(".result").is_hidden()
    assert watch.errors == [], watch.errors


# --- the webhook verifier -------------------------------------------------------------------

def submit_verifier(page, *, payload, message_id, timestamp, secret, received) -> dict:
    form = page.locator("#webhook-verifier")
    form.locator('textarea[name="payload"]').fill(payload)
    form.locator('input[name="message_id"]').fill(message_id)
    form.locator('input[name="timestamp"]').fill(timestamp)
    form.locator('input[name="secret"]').fill(secret)
    form.locator('input[name="received"]').fill(received)
    page.evaluate("""() => ["verifier-standard", "verifier-sellix", "verifier-verdict"]
        .forEach(id => { document.getElementById(id).textContent = ""; })""")
    form.locator('button[type="submit"]').click()
    page.locator(".verifier-output").wait_for(state="visible")
    wait_until(lambda: page.locator("#verifier-verdict").text_content().strip(),
               timeout=10, what="the verifier's verdict")
    return {
        "standard": page.locator("#verifier-standard").text_content().strip(),
        "sellix": page.locator("#verifier-sellix").text_content().strip(),
        "verdict": page.locator("#verifier-verdict").text_content().strip(),
    }


def test_webhook_verifier_matches_a_real_delivery(context, server, receiver):
    api = server.client(mint_via_api(server))
    created = api.post("/v1/webhooks", json={"url": receiver.url("verifier"),
                                             "events": ["order.paid"],
                                             "description": "docs verifier"})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    secret = endpoint["signing_secret"]
    fired = api.post(f"/v1/webhooks/{endpoint['id']}/test", json={})
    assert fired.status_code == 200, fired.text
    assert fired.json()["delivered"] is True, fired.text
    (delivery,) = receiver.wait_for("verifier", 1, timeout=10)
    headers, raw = delivery.headers, delivery.body
    payload = raw.decode("utf-8")
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    received = headers["webhook-signature"]
    expected = webhook_signatures.standard_signature(secret, message_id, int(timestamp), raw)
    assert received == expected
    assert headers["x-signature"] == webhook_signatures.sellix_signature(secret, int(timestamp),
                                                                         raw)

    page, watch = open_docs(context, server)
    page.locator("#verifier").scroll_into_view_if_needed()
    shown = submit_verifier(page, payload=payload, message_id=message_id,
                            timestamp=timestamp, secret=secret, received=received)
    assert shown["standard"] == received
    assert shown["standard"] == expected
    assert shown["sellix"] == headers["x-signature"]
    assert "matches" in shown["verdict"].lower(), shown
    assert "not" not in shown["verdict"].lower(), shown

    index = next(i for i, char in enumerate(payload) if i > len(payload) // 2
                 and char.isalnum())
    tampered = payload[:index] + ("0" if payload[index] != "0" else "1") + payload[index + 1:]
    assert tampered != payload and len(tampered) == len(payload)
    shown = submit_verifier(page, payload=tampered, message_id=message_id,
                            timestamp=timestamp, secret=secret, received=received)
    assert shown["standard"] != received
    assert shown["standard"] == webhook_signatures.standard_signature(
        secret, message_id, int(timestamp), tampered.encode())
    assert "not match" in shown["verdict"].lower(), shown

    assert watch.errors == [], watch.errors
    assert watch.api_requests() == [], watch.api_requests()  # computed in the page


# --- screenshots ----------------------------------------------------------------------------

def test_screenshots_desktop_and_phone(browser, server, artifacts):
    for device, options in (("desktop", DESKTOP), ("phone", PHONE)):
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(TIMEOUT_MS)
        try:
            page, watch = open_docs(ctx, server)
            page.wait_for_load_state("networkidle")
            path = artifacts / f"reference-{device}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 0
            if device == "phone":
                width = page.evaluate("document.body.scrollWidth")
                assert width <= 400, f"/docs body is {width}px wide on a 375px phone"
            assert watch.errors == [], watch.errors
        finally:
            ctx.close()
