"""Helpers shared by the test modules: the BlockPN simulator and a live-mode shop paying
through it, a recording HTTP receiver, an SMTP mailbox, and shortcuts for the API calls most
tests make. Fixtures and the basic helpers (Server, free_port, wait_until, ...) stay in
conftest."""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook

from sellix_lite import db as storage
from sellix_lite.services import admin

from conftest import (
    GENEROUS_LIMITS,
    Server,
    assert_problem,
    child_env,
    free_port,
    require_e2e,
    wait_for_health,
    wait_until,
)

SIM_API_KEY = "sim-api-key-" + "k" * 20
SIM_IPN_SECRET = "sim-ipn-secret-" + "s" * 20


# --- the BlockPN simulator, and a live-mode shop on it --------------------------------------

class Simulator:
    """`sellix-lite blockpn-sim` as a subprocess on a free loopback port, logging to
    `blockpn-sim.log` in `root`. With `ledger`, it keeps its state in `blockpn-sim.db` there
    (read by `payouts_for`); `payout_confirm_seconds`: how long its payouts take to confirm."""

    def __init__(self, root: Path, *, ledger: bool = False,
                 payout_confirm_seconds: int | None = None):
        require_e2e("the BlockPN simulator")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ledger = root / "blockpn-sim.db" if ledger else None
        self.log_path = root / "blockpn-sim.log"
        command = [sys.executable, "-m", "sellix_lite", "blockpn-sim", "--port", str(self.port),
                   "--api-key", SIM_API_KEY, "--ipn-secret", SIM_IPN_SECRET]
        if self.ledger is not None:
            command += ["--data", str(self.ledger)]
        if payout_confirm_seconds is not None:
            command += ["--payout-confirm-seconds", str(payout_confirm_seconds)]
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=root, env=child_env(), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {SIM_API_KEY}"
        try:
            wait_for_health(self.url, self.process, 30, self.output)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        """POST `body` (default `{}`) with the API key; the answer must be a success."""
        response = self.session.post(self.url + path, json=body or {}, timeout=30)
        assert response.ok, response.text
        return response

    def get(self, path: str) -> requests.Response:
        """GET with the API key; the answer must be a success."""
        response = self.session.get(self.url + path, timeout=30)
        assert response.ok, response.text
        return response

    def payouts_for(self, reference: str) -> list[dict]:
        """The simulator's payouts made for our `reference`, read from its ledger."""
        assert self.ledger is not None, "the simulator was started without a ledger"
        conn = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(
                "SELECT * FROM sandbox_payouts WHERE reference = ?", (reference,))]
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()
        self.session.close()


# Limits no module trips, and open invoices polled every second.
LIVE_SHOP_CONFIG = GENEROUS_LIMITS + "[jobs]\npayment_poll_seconds = 1\n"


@contextmanager
def live_mode_shop(tmp_path_factory, config: str = LIVE_SHOP_CONFIG, name: str = "live-shop",
                   **simulator_options) -> Iterator[Server]:
    """A started shop whose BlockPN is a `Simulator` (`shop.sim`, given `simulator_options`),
    with its `public_url` set and a live-mode client `shop.live` with every ability.
    `config`: the rest of its TOML. Both processes are killed on leaving."""
    sim = Simulator(tmp_path_factory.mktemp(f"{name}-blockpn-sim"), **simulator_options)
    try:
        shop = Server(tmp_path_factory.mktemp(name), config + (
            f'[blockpn]\nbase_url = "{sim.url}"\napi_key = "{SIM_API_KEY}"\n'
            f'ipn_secret = "{SIM_IPN_SECRET}"\n'))
        shop.config_path.write_text(shop.config_path.read_text().replace(
            "[server]\n", f'[server]\npublic_url = "{shop.url}"\n', 1))
        shop.sim = sim
        try:
            shop.start()
            shop.live = shop.client(shop.mint(mode="live", name="live"))
            yield shop
        finally:
            shop.stop(signal.SIGKILL)
    finally:
        sim.stop()


# --- a real HTTP receiver on loopback --------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """How the receiver answers one request."""

    status: int = 200
    body: bytes = b"ok"
    hang: float = 0.0  # seconds to wait before answering (released when the receiver closes)
    headers: tuple = ()
    hold: threading.Event | None = None  # answer only once this is set (30 s at the most)


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it; header names lower-cased."""

    method: str
    path: str
    headers: dict
    body: bytes
    at: float

    def json(self) -> dict:
        return json.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up on a hanging answer is expected here


class Receiver:
    """An HTTP server on a free loopback port that records every request and answers each
    path with a programmable sequence of replies (the last one repeats; default 200)."""

    def __init__(self):
        self._prefix = "/" + secrets.token_hex(4)  # a port reused later can't mix up paths
        self._cond = threading.Condition()
        self._requests: list[Received] = []
        self._plans: dict[str, list[Reply]] = {}
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver._handle(self)

            do_GET = do_PUT = do_POST

            def log_message(self, *args):
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def path(self, name: str) -> str:
        return f"{self._prefix}/{name}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.path(name)}"

    def plan(self, name: str, *replies) -> None:
        """Answer `name` with these replies in turn; ints are status codes."""
        with self._cond:
            self._plans[self.path(name)] = [r if isinstance(r, Reply) else Reply(r)
                                            for r in replies]

    def requests(self, name: str) -> list[Received]:
        with self._cond:
            return self._matching(name)

    def wait_for(self, name: str, count: int, timeout: float = 20) -> list[Received]:
        """Wait until `name` got at least `count` requests; returns them all."""
        with self._cond:
            arrived = self._cond.wait_for(lambda: len(self._matching(name)) >= count, timeout)
            got = self._matching(name)
        assert arrived, f"{name}: {len(got)} of {count} requests arrived"
        return got

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _matching(self, name: str) -> list[Received]:
        return [r for r in self._requests if r.path == self.path(name)]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        if len(body) < length:  # the sender went away mid-request (killed): not a delivery
            handler.close_connection = True
            return
        with self._cond:
            self._requests.append(Received(
                handler.command, handler.path,
                {k.lower(): v for k, v in handler.headers.items()}, body, time.time()))
            plan = self._plans.get(handler.path) or [Reply()]
            reply = plan.pop(0) if len(plan) > 1 else plan[0]
            self._cond.notify_all()
        if reply.hold is not None:
            reply.hold.wait(30)
        if reply.hang:
            self._release.wait(reply.hang)
        handler.send_response(reply.status)
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)


# --- a real SMTP server on loopback ----------------------------------------------------------

class Mailbox:
    """An SMTP server (aiosmtpd) on a loopback port — a free one unless given — that keeps
    every message it receives in `envelopes`. `with Mailbox() as mailbox:` runs it."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.envelopes: list = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"

    def start(self) -> Mailbox:
        require_e2e("an SMTP server")
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def smtp_config(port: int, sender: str | None = None) -> str:
    """An [email] section sending through plain SMTP on the loopback `port`."""
    config = f'[email]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nstarttls = false\n'
    return config + (f'from = "{sender}"\n' if sender else "")


# --- API shortcuts ----------------------------------------------------------------------------

# Fields a product type needs to be created at all, unless the caller gives them.
TYPE_EXTRAS = {"dynamic": {"dynamic_url": "http://127.0.0.1:9/x"}}


def json_body(response: requests.Response, status: int = 200):
    """The JSON body of `response`, which must have `status`."""
    assert response.status_code == status, response.text
    return response.json()


def assert_invalid(response, *fields: str, exact: bool = False) -> dict:
    """A 422 whose `errors` names each of `fields` with a readable message (with `exact`:
    those fields and no others); returns the problem."""
    body = assert_problem(response, 422, "unprocessable")
    errors = body.get("errors", {})
    if exact:
        assert "errors" in body and set(errors) == set(fields), body
    for field in fields:
        assert field in errors, body
        assert isinstance(errors[field], str) and errors[field], body
    return body


def buyer(tag: str = "buyer") -> str:
    """An email address no other test uses."""
    return f"{tag}-{secrets.token_hex(4)}@example.com"


def make_product(client, **fields) -> dict:
    """A new product: a license_key one at 4900 USD with a fresh name, unless `fields` say
    otherwise."""
    body = {"name": f"Product {secrets.token_hex(3)}", "type": "license_key",
            "price_cents": 4900, "currency": "USD",
            **TYPE_EXTRAS.get(fields.get("type"), {}), **fields}
    return json_body(client.post("/v1/products", json=body), 201)


def get_product(client, product_id: str) -> dict:
    return json_body(client.get(f"/v1/products/{product_id}"))


def import_keys(client, product_id: str, keys: list) -> dict:
    return json_body(client.post(f"/v1/products/{product_id}/keys", json={"keys": keys}), 201)


def key_product(client, keys: int = 10, **fields) -> tuple[dict, list[str]]:
    """A license_key product (4900 USD unless told) with a pool of `keys` fresh keys."""
    product = make_product(client, **fields)
    tag = secrets.token_hex(4).upper()
    pool = [f"{tag}-{i:04d}-KEY" for i in range(keys)]
    if keys:
        assert import_keys(client, product["id"], pool)["imported"] == keys
    return product, pool


def place_order(client, product_id: str, qty: int = 1, customer_email: str | None = None,
                **extra) -> dict:
    """A new order (awaiting payment), by a fresh buyer unless `customer_email` is given."""
    return json_body(client.post("/v1/orders", json={
        "product_id": product_id, "qty": qty,
        "customer_email": customer_email or buyer(), **extra}), 201)


def fetch(client, order_id: str) -> dict:
    return json_body(client.get(f"/v1/orders/{order_id}"))


def pay(client, order_id: str, amount_cents: int | None = None) -> dict:
    """Pay a test-mode order through the sandbox test helper: in full, or `amount_cents`."""
    body = {} if amount_cents is None else {"amount_cents": amount_cents}
    return json_body(client.post(f"/v1/test_helpers/orders/{order_id}/pay", json=body))


def expire(client, order_id: str) -> dict:
    return json_body(client.post(f"/v1/test_helpers/orders/{order_id}/expire"))


def wait_for_status(client, order_id: str, status: str, timeout: float = 20) -> dict:
    def reached():
        order = fetch(client, order_id)
        return order if order["status"] == status else None
    return wait_until(reached, timeout, what=f"order {order_id} {status}")


def invoice_of(shop: Server, order_id: str) -> str:
    """The provider's invoice of a live-mode order."""
    (invoice_id,), = shop.query("SELECT invoice_id FROM orders WHERE id = ?", (order_id,))
    assert invoice_id
    return invoice_id


def event_types(server: Server, object_id: str) -> Counter:
    """How many events of each type were written about the object."""
    rows = server.query("SELECT type FROM events WHERE json_extract(data, '$.object.id') = ?",
                        (object_id,))
    return Counter(kind for (kind,) in rows)


def email_rows(server: Server, related_id: str, kind: str | None = None) -> list[dict]:
    """The emails about an object (of `kind` only, if given), oldest first."""
    columns = ("id", "mode", "kind", "to_address", "subject", "body_text", "status",
               "attempts", "last_error")
    rows = server.query(f"SELECT {', '.join(columns)} FROM emails WHERE related_id = ? "
                        "ORDER BY id", (related_id,))
    found = [dict(zip(columns, row)) for row in rows]
    return [row for row in found if kind is None or row["kind"] == kind]


# --- orders of every kind, and their events ------------------------------------------------

SHIPPING_ADDRESS = {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                    "postal_code": "10115", "country": "DE"}


def product_of_kind(v1, kind: str, price_cents: int,
                    dynamic_url: str = "") -> tuple[dict, dict]:
    """A product of `kind` ready to sell, and the extra fields its order needs."""
    if kind == "license_key":
        return key_product(v1, 3, price_cents=price_cents)[0], {}
    fields = {"account": {"delivery_text": "user: ada / pass: lovelace"},
              "subscription": {"interval": "month", "delivery_text": "welcome aboard"},
              "file_download": {}, "physical": {},
              "dynamic": {"dynamic_url": dynamic_url}}[kind]
    product = make_product(v1, type=kind, price_cents=price_cents, **fields)
    if kind == "file_download":
        uploaded = v1.put(f"/v1/products/{product['id']}/file?filename=pack.bin",
                          data=secrets.token_bytes(64),
                          headers={"Content-Type": "application/octet-stream"})
        assert uploaded.status_code == 200, uploaded.text
    return product, {"shipping_address": SHIPPING_ADDRESS} if kind == "physical" else {}


def listen_to_orders(v1, receiver, name: str) -> str:
    """Register an endpoint for every order event at `name`; returns its signing secret."""
    endpoint = json_body(v1.post("/v1/webhooks", json={
        "url": receiver.url(name), "events": ["order.*"]}), 201)
    return endpoint["signing_secret"]


def order_events_received(receiver, name: str, secret: str, order_id: str) -> dict:
    """The verified events about `order_id`, by type (each type arrives once)."""
    by_type = {}
    for request in receiver.requests(name):
        event = Webhook(secret).verify(request.body, request.headers)
        if event["data"]["object"]["id"] == order_id:
            assert event["type"] not in by_type
            by_type[event["type"]] = event["data"]["object"]
    return by_type


def goods(order: dict) -> dict:
    """What a delivered order hands over, by kind."""
    delivery = order["delivery"]
    return {key: delivery[key] for key in ("keys", "text", "file_name", "download_url",
                                           "shipping_address") if delivery.get(key)}


def signed_in_dashboard(app, client):
    """The test client with a dashboard session showing test mode."""
    db = storage.connect(app.extensions["sellix"].config.database_path)
    try:
        epoch = admin.session_epoch(db)
    finally:
        db.close()
    with client.session_transaction("/dashboard/") as session:
        session.update(admin=True, mode="test", epoch=epoch)
    return client
