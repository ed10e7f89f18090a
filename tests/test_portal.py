"""The buyer's portal (docs/storefront.md, Portal): the same answer for any email, sign-in
links only to buyers and at most five an hour, the per-address limit, the session cookie
(its attributes, its 24 hours, its mode), links that are tampered with or too old, the
page of everything a buyer bought, deactivating an instance of one's own license only, CSRF
on every form; and, against the real server, the whole journey in Chromium with the link
read from an SMTP server."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect

from sellix_lite.web.portal import COOKIES

from conftest import GENEROUS_LIMITS, running_server, wait_until
from support import (
    Mailbox,
    buyer,
    fetch,
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    product_of_kind,
    smtp_config,
)

LINK = re.compile(r"(https?://[^/\s]+)?(/(?:test/)?portal/sign-in\?t=[\w.\-]+)")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_MESSAGE = "The form has expired or was not sent by this site"
SENT = "a sign-in link is on its way"
PREFIXES = {"live": "/portal", "test": "/test/portal"}


# --- helpers -------------------------------------------------------------------------------

def csrf_of(client, path: str) -> str:
    """The CSRF token of the form on the page at `path` (the client keeps its cookie)."""
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def ask(client, email: str, mode: str = "test", address: str = "127.0.0.1"):
    """Ask the portal of `mode` for a sign-in link for `email`, from `address`."""
    path = PREFIXES[mode]
    return client.post(path, data={"csrf_token": csrf_of(client, path), "email": email},
                       environ_base={"REMOTE_ADDR": address})


def links_sent(app_db, email: str | None = None) -> list[str]:
    """The paths of the sign-in links emailed (to `email`, if given), oldest first."""
    rows = app_db.query("SELECT to_address, body_text FROM emails WHERE kind = 'portal_link' "
                        "ORDER BY id")
    return [LINK.search(body).group(2) for to, body in rows if email in (None, to)]


def bought(v1, email: str, kind: str = "license_key") -> dict:
    """A paid, delivered order of a new product of `kind` for `email`."""
    product, extra = product_of_kind(v1, kind, 1500)
    return pay(v1, place_order(v1, product["id"], customer_email=email, **extra)["id"])


def signed_in(client, app_db, v1, email: str | None = None) -> tuple[object, str, dict]:
    """A client signed in to the test portal as a buyer of a license key; returns it, the
    email and the order."""
    email = email or buyer("portal")
    order = bought(v1, email)
    assert ask(client, email).status_code == 200
    response = client.get(links_sent(app_db, email)[-1])
    assert response.status_code == 303
    return client, email, order


def activate(client, key: str, name: str) -> dict:
    return json_body(client.post("/v1/licenses/activate",
                                 json={"license_key": key, "instance_name": name}), 201)


def license_of(v1, order: dict) -> dict:
    (found,) = json_body(v1.get("/v1/licenses", params={"order_id": order["id"]}))["data"]
    return json_body(v1.get(f"/v1/licenses/{found['id']}"))


def text_of(response) -> str:
    return response.get_data(as_text=True)


def without_tokens(html: str) -> str:
    return CSRF.sub('name="csrf_token" value=""', html)


# --- asking for a link -----------------------------------------------------------------------

def test_the_answer_is_the_same_for_a_buyer_and_for_anyone_else(client, v1, app_db):
    email = buyer("known")
    before = ask(client, email)
    assert links_sent(app_db) == []
    bought(v1, email)
    known, unknown = ask(client, email), ask(client, "nobody@example.com")
    assert before.status_code == known.status_code == unknown.status_code == 200
    assert SENT in text_of(known)
    assert known.get_data() == before.get_data()  # byte for byte
    assert without_tokens(text_of(known)).replace(email, "EMAIL") == \
        without_tokens(text_of(unknown)).replace("nobody@example.com", "EMAIL")
    assert known.headers.get("Set-Cookie") == unknown.headers.get("Set-Cookie")
    (link,) = links_sent(app_db)
    assert link.startswith("/test/portal/sign-in?t=")
    assert links_sent(app_db, email) == [link]


def test_a_buyer_of_the_other_mode_gets_no_link(client, v1, app_db):
    email = buyer("tester")
    bought(v1, email)
    live = ask(client, email, mode="live")
    assert live.status_code == 200 and SENT in text_of(live)
    assert links_sent(app_db) == []


def test_the_email_is_matched_in_any_case_and_the_link_goes_to_the_buyer(client, v1, app_db):
    email = buyer("cased")
    bought(v1, email)
    ask(client, "  " + email.upper() + " ")
    (to, subject), = app_db.query("SELECT to_address, subject FROM emails "
                                  "WHERE kind = 'portal_link'")
    assert to == email and "sign-in link" in subject


def test_at_most_five_links_per_email_per_hour(client, v1, app_db):
    email = buyer("often")
    bought(v1, email)
    answers = [ask(client, email, address=f"10.0.0.{n}") for n in range(6)]
    assert len(links_sent(app_db, email)) == 5
    assert {a.status_code for a in answers} == {200}
    assert len({without_tokens(text_of(a)) for a in answers}) == 1


def test_requests_are_limited_per_client_address(client, v1, app_db):
    """`checkouts_per_minute_per_ip` (10 by default) requests a minute from one address."""
    answers = [ask(client, f"someone{n}@example.com", address="10.1.1.1") for n in range(11)]
    assert [a.status_code for a in answers] == [200] * 10 + [429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert "Please wait" in text_of(answers[-1])
    assert ask(client, "other@example.com", address="10.1.1.2").status_code == 200


def test_an_address_that_is_not_plain_is_a_form_error(client, app_db):
    for typed in ("", "not-an-email", "a@b.c, d@e.com", "x" * 300 + "@example.com"):
        answer = ask(client, typed)
        assert answer.status_code == 422
        assert "Please enter a valid email address." in text_of(answer)
    assert links_sent(app_db) == []


def test_the_form_needs_its_csrf_token(client, v1, app_db):
    email = buyer("csrf")
    bought(v1, email)
    client.get("/test/portal")
    for data in ({"email": email}, {"email": email, "csrf_token": "forged"}):
        refused = client.post("/test/portal", data=data)
        assert refused.status_code == 400 and CSRF_MESSAGE in text_of(refused)
    assert links_sent(app_db) == []


# --- the link and the session ----------------------------------------------------------------

def test_the_link_signs_in_with_an_httponly_lax_cookie_of_the_modes_path(client, v1, app_db):
    email = buyer("cookie")
    bought(v1, email)
    ask(client, email)
    response = client.get(links_sent(app_db)[0])
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/test/portal"
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie")
                 if c.startswith(COOKIES["test"] + "=")]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "Path=/test/portal" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=86400" in cookie
    assert "Secure" not in cookie  # the shop here is served over plain http
    assert email in text_of(client.get("/test/portal"))


def test_a_tampered_link_or_one_for_the_other_mode_shows_nothing(client, v1, app_db):
    email = buyer("tamper")
    order = bought(v1, email)
    ask(client, email)
    link = links_sent(app_db)[0]
    token = link.split("t=")[1]
    for path in (f"/test/portal/sign-in?t={token[:-2]}xx", f"/test/portal/sign-in?t=x{token}",
                 "/test/portal/sign-in", f"/portal/sign-in?t={token}",
                 f"/test/portal/sign-in?t={order['id']}"):
        refused = client.get(path)
        assert refused.status_code == 403, path
        assert "not valid or has expired" in text_of(refused)
        assert order["id"] not in text_of(refused) and email not in text_of(refused)
        assert not any(c.startswith(COOKIES["test"]) or c.startswith(COOKIES["live"])
                       for c in refused.headers.getlist("Set-Cookie"))


def test_a_link_works_for_30_minutes(client, v1, app_db, clock):
    email = buyer("late")
    bought(v1, email)
    ask(client, email)
    link = links_sent(app_db)[0]
    clock.advance(29 * 60)
    assert client.get(link).status_code == 303
    client.delete_cookie(COOKIES["test"], path="/test/portal")
    clock.advance(2 * 60)  # 31 minutes after it was sent
    refused = client.get(link)
    assert refused.status_code == 403 and "not valid or has expired" in text_of(refused)
    assert email not in text_of(client.get("/test/portal"))


def test_the_session_lasts_24_hours(client, v1, app_db, clock):
    _, email, order = signed_in(client, app_db, v1)
    clock.advance(24 * 3600 - 60)
    assert order["id"] in text_of(client.get("/test/portal"))
    clock.advance(120)
    page = text_of(client.get("/test/portal"))
    assert order["id"] not in page and email not in page
    assert "Email me a link" in page


def test_a_test_session_shows_nothing_in_the_live_portal(client, v1, app_db):
    _, email, order = signed_in(client, app_db, v1)
    session = client.get_cookie(COOKIES["test"], path="/test/portal").value
    assert client.get_cookie(COOKIES["test"], path="/portal") is None
    client.set_cookie(COOKIES["live"], session, path="/portal")
    page = text_of(client.get("/portal"))
    assert email not in page and order["id"] not in page
    assert "Email me a link" in page


def test_signing_out_ends_the_session(client, v1, app_db):
    _, email, _ = signed_in(client, app_db, v1)
    token = csrf_of(client, "/test/portal")
    assert client.post("/test/portal/sign-out", data={}).status_code == 400
    answer = client.post("/test/portal/sign-out", data={"csrf_token": token})
    assert answer.status_code == 303
    assert client.get_cookie(COOKIES["test"], path="/test/portal") is None
    assert email not in text_of(client.get("/test/portal"))


# --- the buyer's page -------------------------------------------------------------------------

def test_the_page_lists_every_order_newest_first_with_its_goods(client, v1, app_db):
    email = buyer("shelf")
    keys = bought(v1, email)
    account = bought(v1, email, "account")
    download = bought(v1, email, "file_download")
    pending = place_order(v1, keys["items"][0]["product_id"], customer_email=email)
    someone_elses = bought(v1, buyer("other"))
    signed_in(client, app_db, v1, email)
    page = text_of(client.get("/test/portal"))

    ids = [order["id"] for order in (pending, download, account, keys)]
    positions = [page.index(f'id="{order_id}"') for order_id in ids]
    assert positions == sorted(positions)
    assert someone_elses["id"] not in page
    assert keys["delivery"]["keys"][0] in page
    assert "user: ada / pass: lovelace" in page
    assert "Waiting for payment" in page and "15.00 USD" in page
    (download_url,) = re.findall(r'href="([^"]*/download/[^"]+)"', page)
    assert client.get(urlsplit(download_url).path).status_code == 200
    assert f"/test/order/{keys['id']}?t=" in page


def test_the_page_shows_licenses_and_their_instances(client, v1, app_db):
    _, email, order = signed_in(client, app_db, v1)
    (key,) = order["delivery"]["keys"]
    activate(client, key, "Ada's laptop")
    page = text_of(client.get("/test/portal"))
    licensed = license_of(v1, order)
    assert f'id="{licensed["id"]}"' in page
    assert "Ada&#39;s laptop" in page  # escaped
    assert "1 of unlimited activations" in page
    assert (f'/test/portal/licenses/{licensed["id"]}/instances/'
            f'{licensed["instances"][0]["id"]}/deactivate') in page


def test_the_page_shows_subscriptions_and_when_they_renew(client, v1, app_db):
    email = buyer("subscriber")
    order = bought(v1, email, "subscription")
    signed_in(client, app_db, v1, email)
    page = text_of(client.get("/test/portal"))
    subscription = order["subscription"]
    assert f'id="{subscription["id"]}"' in page
    assert order["items"][0]["product"] in page and "every month" in page
    assert "Active: renews" in page
    assert subscription["current_period_end"].replace("T", " ").replace("Z", " UTC") in page


def test_a_buyer_cancels_the_renewal_of_their_own_subscription(client, v1, app_db):
    email = buyer("leaving")
    subscription = bought(v1, email, "subscription")["subscription"]
    other = bought(v1, buyer("staying"), "subscription")["subscription"]
    signed_in(client, app_db, v1, email)
    action = f"/test/portal/subscriptions/{subscription['id']}/cancel"
    assert f'action="{action}"' in text_of(client.get("/test/portal"))

    assert client.post(action, data={}).status_code == 400
    token = csrf_of(client, "/test/portal")
    refused = client.post(f"/test/portal/subscriptions/{other['id']}/cancel",
                          data={"csrf_token": token})
    assert refused.status_code == 404
    assert json_body(v1.get(f"/v1/subscriptions/{other['id']}"))["cancel_at_period_end"] is False
    assert json_body(v1.get(f"/v1/subscriptions/{subscription['id']}"))["canceled_at"] is None

    done = client.post(action, data={"csrf_token": token})
    assert done.status_code == 303
    page = text_of(client.get(done.headers["Location"]))
    assert "The subscription won&#39;t renew" in page and "Canceled: ends" in page
    assert f'action="{action}"' not in page
    after = json_body(v1.get(f"/v1/subscriptions/{subscription['id']}"))
    assert (after["status"], after["cancel_at_period_end"]) == ("active", True)
    assert after["canceled_at"] is not None


def test_a_buyer_deactivates_an_instance_of_their_own_license(client, v1, app_db):
    _, email, order = signed_in(client, app_db, v1)
    activate(client, order["delivery"]["keys"][0], "desktop")
    licensed = license_of(v1, order)
    (instance,) = licensed["instances"]
    action = f"/test/portal/licenses/{licensed['id']}/instances/{instance['id']}/deactivate"

    refused = client.post(action, data={})
    assert refused.status_code == 400 and CSRF_MESSAGE in text_of(refused)
    assert license_of(v1, order)["activations"] == 1

    done = client.post(action, data={"csrf_token": csrf_of(client, "/test/portal")})
    assert done.status_code == 303
    assert "The instance was deactivated." in text_of(client.get(done.headers["Location"]))
    after = license_of(v1, order)
    assert (after["activations"], after["instances"]) == (0, [])


def test_another_buyers_instance_is_not_found(client, v1, app_db):
    other_order = bought(v1, buyer("victim"))
    activate(client, other_order["delivery"]["keys"][0], "victim's machine")
    victim = license_of(v1, other_order)
    signed_in(client, app_db, v1)
    token = csrf_of(client, "/test/portal")
    action = (f"/test/portal/licenses/{victim['id']}/instances/"
              f"{victim['instances'][0]['id']}/deactivate")
    refused = client.post(action, data={"csrf_token": token})
    assert refused.status_code == 404
    assert license_of(v1, other_order)["activations"] == 1


def test_actions_need_a_session(client, v1):
    order = bought(v1, buyer("nobody-signed-in"))
    activate(client, order["delivery"]["keys"][0], "box")
    licensed = license_of(v1, order)
    action = (f"/test/portal/licenses/{licensed['id']}/instances/"
              f"{licensed['instances'][0]['id']}/deactivate")
    refused = client.post(action, data={"csrf_token": csrf_of(client, "/test/portal")})
    assert refused.status_code == 403
    assert license_of(v1, order)["activations"] == 1


def test_portal_pages_are_not_cached_and_carry_the_security_headers(client, v1, app_db):
    signed_in(client, app_db, v1)
    for path in ("/test/portal", "/portal"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert '<meta name="viewport"' in text_of(response)
        assert "<script" not in text_of(response)


# --- links to the portal ------------------------------------------------------------------

def test_the_order_email_and_the_order_page_link_to_the_portal(client, v1, app_db):
    order = bought(v1, buyer("linked"))
    ((body,),) = app_db.query("SELECT body_text FROM emails WHERE related_id = ? AND "
                              "kind = 'order_delivered'", (order["id"],))
    assert re.search(r"All your orders, keys and licenses: \S+/test/portal\n", body)
    page = text_of(client.get(urlsplit(fetch(v1, order["id"])["payment"]["checkout_url"])
                              .path + "?" + urlsplit(order["payment"]["checkout_url"]).query))
    assert 'href="/test/portal"' in page


@pytest.mark.parametrize("mode", ["live", "test"])
def test_the_form_is_served_in_both_modes(client, mode):
    page = client.get(PREFIXES[mode])
    assert page.status_code == 200
    assert ("TEST MODE" in text_of(page)) == (mode == "test")
    assert f'action="{PREFIXES[mode]}"' in text_of(page)


# --- the whole journey, against the real server -------------------------------------------

PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}


def message_to(mailbox, email: str, subject: str):
    """The newest message the SMTP server received for `email` with `subject` in its
    subject, parsed; None before it arrives."""
    for envelope in reversed(mailbox.envelopes):
        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=policy.default)
        if envelope.rcpt_tos == [email] and subject in message["Subject"]:
            return message
    return None


def assert_fits_the_phone(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{page.url} scrolls sideways: {width}px"


def test_the_whole_journey_in_chromium(tmp_path, browser, artifacts):
    """Buy a key and a subscription through the API, activate the key, ask the portal for
    a link on a phone with JavaScript off, read the link from the SMTP server, open it, see
    the key, deactivate the instance, cancel the renewal, and find the API agreeing."""
    with Mailbox() as mailbox, running_server(
            tmp_path, GENEROUS_LIMITS + "[jobs]\ntick_seconds = 1\n"
            + smtp_config(mailbox.port, "shop@example.org")) as shop:
        v1, email = shop.admin, buyer("journey")
        product, _ = key_product(v1, 2, name="Editor Pro", activation_limit=2)
        order = pay(v1, place_order(v1, product["id"], customer_email=email)["id"])
        (key,) = order["delivery"]["keys"]
        plan = make_product(v1, name="Cloud Plan", type="subscription", interval="month",
                            price_cents=900, delivery_text="welcome aboard")
        subscription = pay(v1, place_order(v1, plan["id"], customer_email=email)["id"])[
            "subscription"]
        activated = json_body(requests.post(shop.url + "/v1/licenses/activate", timeout=30,
                                            json={"license_key": key,
                                                  "instance_name": "laptop"}), 201)
        delivered = wait_until(lambda: message_to(mailbox, email, "Your order"),
                               what="the order email")
        assert f"licenses: {shop.url}/test/portal\r\n" in delivered.get_content()

        context = browser.new_context(java_script_enabled=False, **PHONE)
        try:
            page = context.new_page()
            assert page.goto(shop.url + "/test/portal").status == 200
            expect(page.get_by_text("TEST MODE")).to_be_visible()
            assert_fits_the_phone(page)
            page.get_by_label("Email").fill(email)
            page.get_by_role("button", name="Email me a link").click()
            expect(page.locator("h1")).to_have_text("Check your email")
            page.screenshot(path=str(artifacts / "portal-phone-sent.png"), full_page=True)

            sign_in = wait_until(lambda: message_to(mailbox, email, "sign-in link"),
                                 what="the sign-in email")
            link = LINK.search(sign_in.get_content()).group(0)
            assert link.startswith(shop.url + "/test/portal/sign-in?t=")
            page.goto(link)
            assert urlsplit(page.url).path == "/test/portal"
            main = page.locator("main")
            expect(main).to_contain_text(f"Signed in as {email}")
            expect(main.locator("code", has_text=key)).to_have_count(2)  # order and license
            expect(main).to_contain_text("1 of 2 activations")
            expect(main).to_contain_text("laptop")
            assert_fits_the_phone(page)
            page.screenshot(path=str(artifacts / "portal-phone-account.png"), full_page=True)

            page.get_by_role("button", name="Deactivate laptop").click()
            expect(page.get_by_text("The instance was deactivated.")).to_be_visible()
            expect(main).to_contain_text("0 of 2 activations")
            expect(page.get_by_role("button", name="Deactivate laptop")).to_have_count(0)

            page.get_by_role("button", name="Cancel the renewal of Cloud Plan").click()
            expect(page.get_by_text("The subscription won't renew")).to_be_visible()
            expect(main.locator(f'[id="{subscription["id"]}"]')).to_contain_text(
                "Canceled: ends")
            assert_fits_the_phone(page)
            page.screenshot(path=str(artifacts / "portal-phone-after.png"), full_page=True)
        finally:
            context.close()

        licensed = json_body(v1.get(f"/v1/licenses/{activated['license']['id']}"))
        assert (licensed["activations"], licensed["instances"]) == (0, [])
        canceled = json_body(v1.get(f"/v1/subscriptions/{subscription['id']}"))
        assert (canceled["status"], canceled["cancel_at_period_end"]) == ("active", True)
        log = shop.logged("/test/portal/sign-in")
        assert "t=[redacted]" in log and link.partition("t=")[2] not in log
