"""Outbound calls can't hold the server (docs/webhooks.md): a total deadline on every call, at
most 64 KiB read, a cap on synchronous test sends, and senders no slow receiver can take from
the others — proved against a tarpit, a real TCP server on loopback that never answers,
answers a byte at a time, or answers without end."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from test_dashboard import flashes, post_form, set_password, sign_in

from sellix_lite import outbound
from sellix_lite.providers.blockpn import ProviderError
from sellix_lite.providers.http_client import BlockPNClient

from conftest import GENEROUS_LIMITS, assert_problem, wait_until
from support import Reply, json_body, make_product, pay, place_order, wait_for_status

HUGE = 200 * 1024


class Tarpit:
    """A TCP server on loopback that reads each request's start and then answers as told:
    `silent` never, `trickle` a header byte every half second, `flood` with ninety
    header lines of 60 KB, `huge` with a 200 KB JSON body. Counts the connections it holds
    (`open`, `most_open`) and those the caller ended (`cut`)."""

    def __init__(self, behaviour: str):
        self._answer = getattr(self, f"_{behaviour}")
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self._listener.getsockname()[1]
        self._state = threading.Condition()
        self.open = self.most_open = self.cut = 0
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, name: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def wait(self, what: str, predicate) -> None:
        with self._state:
            assert self._state.wait_for(lambda: predicate(self), 30), f"tarpit: {what}"

    def close(self) -> None:
        self._closing.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._state:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self._state.notify_all()
        try:
            conn.recv(65536)
            self._answer(conn)
            self._wait_for_hang_up(conn)
        except OSError:
            pass  # the caller hung up
        finally:
            conn.close()
            with self._state:
                self.open -= 1
                self.cut += 1
                self._state.notify_all()

    def _wait_for_hang_up(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._closing.is_set():
            try:
                if conn.recv(65536) == b"":
                    return
            except TimeoutError:
                continue

    def _silent(self, conn: socket.socket) -> None:
        pass

    def _trickle(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not self._closing.wait(0.5):
            conn.sendall(b"a")  # fails once the caller has hung up

    def _flood(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(90):
            conn.sendall(b"X-Pad: " + b"a" * 60000 + b"\r\n")
        conn.sendall(b"Content-Length: 2\r\n\r\nok")

    def _huge(self, conn: socket.socket) -> None:
        body = b'{"id": "' + b"x" * HUGE + b'"}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.fixture
def tarpit(request):
    pit = Tarpit(request.param)
    yield pit
    pit.close()


def endpoint(client, url: str, events=("product.*",)) -> dict:
    return json_body(client.post("/v1/webhooks", json={"url": url, "events": list(events)}),
                     201)


def attempts_of(client, endpoint_id: str) -> list[dict]:
    deliveries = json_body(client.get(f"/v1/webhooks/{endpoint_id}/deliveries"))["data"]
    return [attempt for delivery in deliveries for attempt in delivery["attempts"]]


# --- the deadline and the 64 KiB ------------------------------------------------------------

@pytest.mark.parametrize("tarpit", ["trickle"], indirect=True)
def test_a_trickling_peer_is_cut_off_at_the_deadline(make_server, tarpit):
    """Each byte comes well within the timeout; the call still ends at it."""
    srv = make_server(config="[jobs]\ntick_seconds = 1\n"
                             "[webhooks]\ntimeout_seconds = 2\nretry_schedule = [1]\n")
    client = srv.client(srv.mint())
    hook = endpoint(client, tarpit.url("webhook"))
    make_product(client, type="account")
    logged = wait_until(lambda: attempts_of(client, hook["id"]), what="a logged attempt")
    assert logged[0]["response_code"] is None and logged[0]["error"] == "timed out"

    product = make_product(client, type="dynamic", dynamic_url=tarpit.url("dynamic"),
                           delivery_text=None)
    order = pay(client, place_order(client, product["id"])["id"])
    failed = wait_for_status(client, order["id"], "failed")
    assert "timed out" in failed["failure_reason"]
    tarpit.wait("every call cut", lambda pit: pit.open == 0 and pit.cut >= 4)

    result = outbound.post(tarpit.url(), b"{}", {}, timeout=1, targets=None)
    assert (result.status, result.error) == (None, "timed out")
    with pytest.raises(ProviderError, match="timed out"):
        BlockPNClient(f"http://127.0.0.1:{tarpit.port}", "key", "secret",
                      timeout=1).get_invoice("inv_1")


@pytest.mark.parametrize("tarpit", ["flood"], indirect=True)
def test_no_more_than_64_kib_of_an_answer_is_read(make_server, tarpit):
    """Headers past 64 KiB fail the call, where http.client alone reads 5 MB of them."""
    srv = make_server()
    client = srv.client(srv.mint())
    hook = endpoint(client, tarpit.url("webhook"))
    fired = json_body(client.post(f"/v1/webhooks/{hook['id']}/test", json={}))
    assert (fired["delivered"], fired["response_code"]) == (False, None)
    result = outbound.post(tarpit.url(), b"{}", {}, timeout=10, targets=None)
    assert (result.status, result.error) == (None, "the answer is larger than 64 KiB")


@pytest.mark.parametrize("tarpit", ["huge"], indirect=True)
def test_blockpn_answers_are_read_up_to_64_kib(tarpit):
    client = BlockPNClient(f"http://127.0.0.1:{tarpit.port}", "key", "secret", timeout=10)
    with pytest.raises(ProviderError, match="larger than 64 KiB"):
        client.get_invoice("inv_1")
    kept = outbound.post(tarpit.url(), b"{}", {}, timeout=10, targets=None,
                         keep_bytes=HUGE)
    assert kept.ok and len(kept.body) < 64 * 1024


# --- no peer holds the server ---------------------------------------------------------------

@pytest.mark.parametrize("tarpit", ["trickle"], indirect=True)
def test_eight_test_sends_to_a_tarpit_leave_the_server_answering(make_server, tarpit):
    srv = make_server(config=GENEROUS_LIMITS + "[webhooks]\ntimeout_seconds = 3\n")
    client = srv.client(srv.mint())  # server.threads = 8: two test sends at once
    hook = endpoint(client, tarpit.url())
    with ThreadPoolExecutor(8) as pool:
        sends = [pool.submit(client.post, f"/v1/webhooks/{hook['id']}/test", json={})
                 for _ in range(8)]
        # Every send is either held by the tarpit or already answered.
        wait_until(lambda: tarpit.open + sum(send.done() for send in sends) == 8,
                   what="every test send under way or answered")
        assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
        answers = [send.result() for send in sends]
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {200, 429}, statuses
    assert tarpit.most_open <= 2
    for answer in answers:
        if answer.status_code == 429:
            problem = assert_problem(answer, 429, "rate_limited")
            assert answer.headers["Retry-After"] == "3"
            assert "Too many test sends at once" in problem["detail"]
        else:
            assert answer.json()["delivered"] is False
            assert answer.json()["response_code"] is None


@pytest.mark.parametrize("tarpit", ["silent"], indirect=True)
def test_eight_dead_endpoints_per_mode_delay_no_one_else(make_server, tarpit, receiver):
    """A delivery to a healthy endpoint arrives within tick_seconds + 5 s, in either mode,
    while eight endpoints of each mode never answer (timeout_seconds is longer than that)."""
    srv = make_server(config=GENEROUS_LIMITS + "[jobs]\ntick_seconds = 1\n[webhooks]\n"
                             "timeout_seconds = 30\nallow_private_targets = true\n")
    clients = {"test": srv.client(srv.mint()), "live": srv.client(srv.mint(mode="live"))}
    for mode, client in clients.items():
        for n in range(8):
            endpoint(client, tarpit.url(f"{mode}-{n}"))
        for _ in range(2):
            make_product(client, type="account")
    tarpit.wait("sixteen callers held", lambda pit: pit.open >= 16)
    for mode, client in clients.items():
        endpoint(client, receiver.url(mode))
        make_product(client, type="account")
        receiver.wait_for(mode, 1, timeout=1 + 5)
    assert tarpit.most_open == 16  # one sender per dead endpoint, no more


@pytest.mark.parametrize("tarpit", ["silent"], indirect=True)
def test_dead_dynamic_urls_delay_no_other_product(make_server, tarpit, receiver):
    """Dynamic deliveries go out on the same senders: one call per product at a time."""
    srv = make_server(config=GENEROUS_LIMITS + "[jobs]\ntick_seconds = 1\n"
                             "[webhooks]\ntimeout_seconds = 30\n")
    client = srv.client(srv.mint())
    for n in range(8):
        product = make_product(client, type="dynamic", dynamic_url=tarpit.url(f"dyn-{n}"))
        for _ in range(2):
            pay(client, place_order(client, product["id"])["id"])
    tarpit.wait("eight calls held", lambda pit: pit.open >= 8)
    receiver.plan("dynamic", Reply(200, b"KEY-1"))
    healthy = make_product(client, type="dynamic", dynamic_url=receiver.url("dynamic"))
    order = pay(client, place_order(client, healthy["id"])["id"])
    receiver.wait_for("dynamic", 1, timeout=1 + 5)
    assert wait_for_status(client, order["id"], "completed")["delivery"]["text"] == "KEY-1"
    assert tarpit.most_open == 8  # one call per dead product, no more


@pytest.mark.parametrize("tarpit", ["silent"], indirect=True)
def test_the_dashboard_says_when_test_sends_are_all_under_way(make_server, tarpit):
    srv = make_server(config=GENEROUS_LIMITS + "[webhooks]\ntimeout_seconds = 5\n",
                      server_options="threads = 4")  # one test send at a time
    client = srv.client(srv.mint())
    hook = endpoint(client, tarpit.url())
    set_password(srv, "correct horse battery staple")
    session = requests.Session()
    assert sign_in(srv, "correct horse battery staple", session).status_code == 303
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.post, f"/v1/webhooks/{hook['id']}/test", json={})
        tarpit.wait("the test send arrived", lambda pit: pit.open == 1)
        page = f"/dashboard/webhooks/{hook['id']}"
        _, answer = post_form(session, srv, page, page + "/test")
        assert answer.status_code == 303
        shown = session.get(srv.url + page, timeout=30).text
        assert busy.result().json()["delivered"] is False
    assert any("Too many test sends at once" in text and "try again in 5 seconds" in text
               for text in flashes(shown, "error")), flashes(shown)


# --- private targets in test mode -----------------------------------------------------------

def test_serve_warns_when_test_keys_may_reach_private_networks(make_server):
    exposed = make_server(server_options='host = "0.0.0.0"')
    assert "allow_private_targets_in_test" in exposed.logged("serving on")
    closed = make_server(server_options='host = "0.0.0.0"',
                         config="[webhooks]\nallow_private_targets_in_test = false\n")
    assert "allow_private_targets_in_test" not in closed.logged("serving on")
    local = make_server()
    assert "allow_private_targets_in_test" not in local.logged("serving on")


def test_test_mode_keeps_off_private_networks_when_told(make_server):
    srv = make_server(config="[webhooks]\nallow_private_targets_in_test = false\n")
    client = srv.client(srv.mint())
    hook = endpoint(client, f"http://{socket.gethostname()}:9/hook", events=["*"])
    fired = json_body(client.post(f"/v1/webhooks/{hook['id']}/test", json={}))
    assert (fired["delivered"], fired["response_code"]) == (False, None)
    make_product(client, type="account")
    logged = wait_until(lambda: attempts_of(client, hook["id"]), what="a logged attempt")
    assert "allow_private_targets_in_test = true" in logged[0]["error"], logged
