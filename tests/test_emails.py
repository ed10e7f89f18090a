"""Buyer email addresses and the email outbox through the real server and a real SMTP
server: only a plain address is taken at checkout (API and storefront alike); merchant
text can't add a header or a recipient; a message that can't be built or sent is retried
and then failed on its own, never holding back another, before or after a restart."""

from __future__ import annotations

import email
import email.policy
import re
import secrets

import pytest
import requests

from conftest import GENEROUS_LIMITS, Server, wait_until
from support import (
    Mailbox,
    assert_invalid,
    buyer,
    email_rows,
    key_product,
    make_product,
    pay,
    place_order,
    smtp_config,
)

SENDER = "shop@example.org"
FAST_JOBS = "[jobs]\ntick_seconds = 1\n"
RETRIES = [60, 60, 60]  # three delays: four attempts in all
LONGEST = "a" * 64 + "@" + "b" * 185 + ".com"  # 254 characters

BAD_ADDRESSES = [
    ":;@b.co", "a@[b.co", "a@b.co]", "a,b@c.co", "a@b.co,c@d.co", "a;b@c.co", "a:b@c.co",
    "a b@c.co", "a\tb@c.co", "a@b.co\r\nBcc: evil@x.co", "a\nb@c.co", '"a"@b.co', "a'b@c.co",
    "<a@b.co>", "a(b)@c.co", "a{b}@c.co", "a\\b@c.co", "a\x00b@c.co", "a\x7fb@c.co",
    "a\u2028b@c.co", "a@b", "a@@b.co", "a@b@c.co", "@b.co", "a@", "a@.b.co", "a@b.co.",
    "a@b..co", ".a@b.co", "a.@b.co", "a..b@c.co", "a" + LONGEST,
]
GOOD_ADDRESSES = ["a@b.co", "Buyer.Name+tag@Sub.Example.co.uk", "x_y-z@mail-1.example.com",
                  "jörg@bücher.example", LONGEST]


# --- 1. what checkout takes -----------------------------------------------------------------

@pytest.fixture(scope="module")
def product(server):
    return make_product(server.admin, type="account", delivery_text="login")


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_the_api_refuses_anything_but_a_plain_address(server, product, address):
    response = server.admin.post("/v1/orders", json={"product_id": product["id"],
                                                     "customer_email": address})
    assert_invalid(response, "customer_email", exact=True)


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_the_api_takes_plain_addresses(server, product, address):
    response = server.admin.post("/v1/orders", json={"product_id": product["id"],
                                                     "customer_email": address})
    assert response.status_code == 201, response.text
    assert response.json()["customer_email"] == address.lower()


def test_the_openapi_document_describes_the_address(server):
    document = requests.get(server.url + "/v1/openapi.json", timeout=30).json()
    body = document["paths"]["/v1/orders"]["post"]["requestBody"]
    field = body["content"]["application/json"]["schema"]["properties"]["customer_email"]
    pattern = re.compile(field["pattern"])
    assert all(pattern.search(address) for address in GOOD_ADDRESSES)
    assert not any(pattern.search(address) for address in BAD_ADDRESSES)
    assert pattern.search(f" {LONGEST} ")  # the server trims before it checks the length


@pytest.mark.parametrize("address", [":;@b.co", "a@[b.co", "a,b@c.co"])
def test_the_storefront_refuses_them_too(server, product, address):
    session = requests.Session()
    url = f"{server.url}/test/product/{product['slug']}"
    token = re.search(r'name="csrf_token"\s+value="([^"]+)"', session.get(url, timeout=30).text)
    response = session.post(url + "/checkout", data={"csrf_token": token.group(1),
                                                     "email": address},
                            allow_redirects=False, timeout=30)
    assert response.status_code == 422
    assert "Please enter a valid email address." in response.text


# --- 2. sending ------------------------------------------------------------------------------

def parse_mail(envelope) -> email.message.EmailMessage:
    raw = envelope.original_content or envelope.content
    return email.message_from_bytes(raw, policy=email.policy.default)


def insert_emails(shop: Server, rows: list[tuple[str, str, str, str]]) -> None:
    """Queue (id, mode, to, subject) rows as one transaction, due now: what an older
    database could hold."""
    statements = ["BEGIN"] + [
        "INSERT INTO emails (id, mode, kind, to_address, subject, body_text, status, "
        "next_attempt_at, created_at) VALUES ("
        + ", ".join(f"'{value}'" for value in (email_id, mode, "order_delivered", to,
                                                subject.replace("'", "''"), "your goods"))
        + ", 'pending', '2000-01-01T00:00:00Z', '2000-01-01T00:00:00Z')"
        for email_id, mode, to, subject in rows] + ["COMMIT"]
    shop.execute(*statements)


def outbox(shop: Server, *ids: str) -> dict[str, tuple]:
    """status, attempts, lease_owner and last_error of each email."""
    marks = ", ".join("?" * len(ids))
    return {row[0]: row[1:] for row in shop.query(
        f"SELECT id, status, attempts, lease_owner, last_error FROM emails WHERE id IN "
        f"({marks})", ids)}


def recipients(mailbox: Mailbox) -> list[str]:
    return sorted(address for envelope in mailbox.envelopes for address in envelope.rcpt_tos)


def fail_for_good(shop: Server, email_id: str) -> int:
    """Make each retry of `email_id` due at once until it is failed; returns its attempts."""
    def failed():
        status, attempts, lease, error = outbox(shop, email_id)[email_id]
        if status == "pending" and lease is None and error:
            shop.execute("UPDATE emails SET next_attempt_at = '2000-01-01T00:00:00Z' "
                          "WHERE id = ?", params=(email_id,))
        return attempts if status == "failed" else None
    return wait_until(failed, timeout=60, what=f"{email_id} failed")


def test_a_message_that_cant_be_built_holds_back_no_other(make_server):
    tag = secrets.token_hex(3)
    with Mailbox() as mailbox:
        shop = make_server(config=GENEROUS_LIMITS + FAST_JOBS + smtp_config(mailbox.port,
                                                                            SENDER)
                           + f"retry_schedule = {RETRIES}\n")
        bad = [(f"em_{tag}_0", "live", ":;@b.co", "hello"),
               (f"em_{tag}_1", "test", "a@[b.co", "hello")]
        good = [(f"em_{tag}_2", "live", "first@example.com", "hello"),
                (f"em_{tag}_3", "test", "second@example.com",
                 "Game\r\nBcc: evil@example.net\r\nX-Injected: yes"),
                (f"em_{tag}_4", "test", "third@example.com", "Line\rbreak\nhere")]
        insert_emails(shop, bad + good)
        wait_until(lambda: len(mailbox.envelopes) == 3, what="the three good messages")
        assert recipients(mailbox) == ["first@example.com", "second@example.com",
                                       "third@example.com"]
        for envelope in mailbox.envelopes:
            message = parse_mail(envelope)
            assert "Bcc" not in message and "X-Injected" not in message
            assert "\r" not in message["Subject"] and "\n" not in message["Subject"]
        subjects = {parse_mail(e)["To"]: parse_mail(e)["Subject"] for e in mailbox.envelopes}
        assert subjects["second@example.com"] == \
            "Game Bcc: evil@example.net X-Injected: yes"
        states = outbox(shop, *(row[0] for row in bad + good))
        wait_until(lambda: all(outbox(shop, row[0])[row[0]][0] == "sent" for row in good),
                   what="the good messages marked sent")
        for email_id, *_ in bad:  # retried later, not stuck under a lease
            status, attempts, lease, error = outbox(shop, email_id)[email_id]
            assert status == "pending" and lease is None and error, states
        for email_id, *_ in bad:
            assert fail_for_good(shop, email_id) == len(RETRIES) + 1
        assert len(mailbox.envelopes) == 3

        # After a restart, a bad message queued before the good ones still holds none back.
        assert shop.stop() == 0
        later = [(f"em_{tag}_5", "live", "a@b.co,c@d.co", "again"),
                 (f"em_{tag}_6", "live", "fourth@example.com", "again")]
        insert_emails(shop, later)
        shop.start()
        wait_until(lambda: len(mailbox.envelopes) == 4, what="the message queued later")
        assert mailbox.envelopes[-1].rcpt_tos == ["fourth@example.com"]
        assert fail_for_good(shop, f"em_{tag}_5") == len(RETRIES) + 1
        assert outbox(shop, f"em_{tag}_6")[f"em_{tag}_6"][0] == "sent"


def test_a_product_name_cant_add_a_header_or_a_recipient(make_server):
    with Mailbox() as mailbox:
        shop = make_server(config=GENEROUS_LIMITS + FAST_JOBS + smtp_config(mailbox.port,
                                                                            SENDER))
        client = shop.client(shop.mint())
        product, _ = key_product(client, 1, name="Game\r\nBcc: evil@example.net\nX-A: 1")
        address = buyer("crlf")
        order = pay(client, place_order(client, product["id"], customer_email=address)["id"])
        assert order["status"] == "completed"
        wait_until(lambda: mailbox.envelopes, what="the delivery email")
        (envelope,) = mailbox.envelopes
        assert envelope.rcpt_tos == [address]
        message = parse_mail(envelope)
        assert "Bcc" not in message and "X-A" not in message
        assert message["Subject"].endswith("Game Bcc: evil@example.net X-A: 1")
        (row,) = email_rows(shop, order["id"])
        assert "\r" not in row["subject"] and "\n" not in row["subject"]
