"""Request bodies through the real server, over raw sockets: a body announced over its
limit is refused from its Content-Length before a byte of it is read, a chunked one is cut
once it passes the limit — 1 MiB for /v1, 64 KiB for HTML forms and the IPN, the upload
limit only for credentialed uploads — with a 413 that is problem JSON under /v1 and /ipn."""

from __future__ import annotations

import json
import re
import select
import socket

import pytest
import requests

from conftest import GENEROUS_LIMITS, Server

MiB, KiB = 1024 * 1024, 1024
PASSWORD = "a long enough password"
UPLOAD_MB = 2
CONFIG = GENEROUS_LIMITS + "[blockpn]\nbase_url = \"http://127.0.0.1:9\"\n" \
    "api_key = \"k\"\nipn_secret = \"s\"\n"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("limits"), CONFIG)
    server.config_path.write_text(server.config_path.read_text().replace(
        "[storage]\n", f"[storage]\nmax_upload_mb = {UPLOAD_MB}\n", 1))
    server.start()
    server.secret = server.mint(name="root")
    assert server.cli("admin", "set-password", input=PASSWORD + "\n").returncode == 0
    yield server
    server.stop()


def exchange(shop, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, dict,
                                                                               bytes]:
    """Send a request head (and `body`) on a new connection; the status, headers and body
    of the answer, read until the server closes or the announced length is in."""
    with socket.create_connection(("127.0.0.1", shop.port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def head(method: str, path: str, shop, *extra: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{shop.port}", *extra]
    return "\r\n".join(lines) + "\r\n"


def assert_problem_413(status: int, headers: dict, body: bytes, path: str) -> None:
    assert status == 413, body
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["type"] == "payload_too_large" and problem["status"] == 413
    assert problem["instance"] == path


ANNOUNCED = [  # (method, path, extra headers, problem JSON?)
    ("POST", "/v1/products", ["Content-Type: application/json"], True),
    ("POST", "/v1/products", ["Content-Type: application/json", "Authorization: Bearer x"],
     True),
    ("POST", "/v1/no-such-path", [], True),
    ("POST", "/ipn/blockpn", ["Content-Type: application/json"], True),
    ("PUT", "/v1/products/prod_x/file", ["Content-Type: application/octet-stream"], True),
    ("PUT", "/v1/products/prod_x/file", ["Authorization: Bearer x"], True),
    ("PUT", "/v1/products/prod_x/file", ["Authorization: Bearer x", "Expect: 100-continue"],
     True),
    ("POST", "/test/product/some-slug/checkout",
     ["Content-Type: application/x-www-form-urlencoded"], False),
    ("POST", "/dashboard/login", ["Content-Type: application/x-www-form-urlencoded"], False),
    ("POST", "/dashboard/products/prod_x/file", ["Cookie: sellix_session=x"], False),
    ("GET", "/", [], False),
]


@pytest.mark.parametrize("method,path,extra,problem", ANNOUNCED)
def test_a_body_announced_over_any_limit_is_refused_before_it_is_sent(shop, method, path,
                                                                      extra, problem):
    """100 MiB announced, nothing sent: the answer comes at once (a server waiting for the
    body would leave the read below to time out)."""
    status, headers, body = exchange(
        shop, head(method, path, shop, f"Content-Length: {100 * MiB}", *extra))
    if problem:
        assert_problem_413(status, headers, body, path)
    else:
        assert status == 413 and headers["content-type"].startswith("text/html"), body
    assert headers.get("connection") == "close"


@pytest.mark.parametrize("path,limit", [
    ("/v1/products", MiB), ("/ipn/blockpn", 64 * KiB),
    ("/test/product/some-slug/checkout", 64 * KiB), ("/dashboard/login", 64 * KiB)])
def test_each_path_takes_its_limit_and_not_a_byte_more(shop, path, limit):
    auth = [f"Authorization: Bearer {shop.secret}"] if path.startswith("/v1") else []
    for size, refused in ((limit, False), (limit + 1, True)):
        body = b"x" * size
        status, headers, answer = exchange(shop, head(
            "POST", path, shop, f"Content-Length: {size}",
            "Content-Type: application/x-www-form-urlencoded", *auth), body)
        assert (status == 413) is refused, (size, status, answer[:300])


def new_file_product(shop) -> str:
    product = shop.client(shop.secret).post("/v1/products", json={
        "name": "Course", "type": "file_download", "price_cents": 100, "currency": "USD"})
    assert product.status_code == 201, product.text
    return product.json()["id"]


def test_the_upload_limit_applies_only_to_an_upload_with_good_credentials(shop):
    client = shop.client(shop.secret)
    url = f"/v1/products/{new_file_product(shop)}/file?filename=course.bin"
    big = b"c" * (UPLOAD_MB * MiB)
    assert client.put(url, data=big).status_code == 200
    # The same body with no key, an unknown one or one that may not write products is
    # held to the API's 1 MiB before anything else.
    reader = client.post("/v1/api-keys", json={"name": "reader",
                                               "abilities": ["products:read"]})
    assert reader.status_code == 201, reader.text
    for authorization in (None, "Bearer sx_test_" + "a" * 40, "Basic eDp5",
                          f"Bearer {reader.json()['secret']}"):
        headers = {"Authorization": authorization} if authorization else {}
        refused = requests.put(shop.url + url, data=big, headers=headers, timeout=30)
        assert refused.status_code == 413, (authorization, refused.text)
        assert refused.json()["type"] == "payload_too_large"
    status, headers, body = exchange(shop, head(
        "PUT", url, shop, f"Authorization: Bearer {shop.secret}",
        f"Content-Length: {(UPLOAD_MB + 1) * MiB}"))
    assert_problem_413(status, headers, body, url.split("?")[0])


def test_the_dashboard_upload_takes_the_upload_limit_only_when_signed_in(shop):
    product_id = new_file_product(shop)
    session = requests.Session()
    login = session.get(shop.url + "/dashboard/login", timeout=30).text
    signed_in = session.post(shop.url + "/dashboard/login", timeout=30, data={
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', login).group(1),
        "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    page = session.get(f"{shop.url}/dashboard/products/{product_id}", timeout=30).text
    action = f"/dashboard/products/{product_id}/file"
    form = page.split(f'action="{action}"')[1].split("</form>")[0]
    fields = dict(re.findall(r'name="(csrf_token|form_id)" value="([^"]+)"', form))
    files = {"file": ("course.bin", b"d" * (UPLOAD_MB * MiB))}
    forged = requests.post(shop.url + action, data=fields, files=files, timeout=30,
                           cookies={**session.cookies.get_dict(), "sellix_session": "forged"})
    assert forged.status_code == 413, forged.text
    uploaded = session.post(shop.url + action, data=fields, files=files, timeout=30)
    assert uploaded.status_code == 200, uploaded.text
    product = shop.client(shop.secret).get(f"/v1/products/{product_id}").json()
    assert product["file"]["size_bytes"] == UPLOAD_MB * MiB


@pytest.mark.parametrize("path,limit,problem", [
    ("/v1/products", MiB, True), ("/ipn/blockpn", 64 * KiB, True),
    ("/test/product/some-slug/checkout", 64 * KiB, False)])
def test_a_chunked_body_is_cut_at_the_limit(shop, path, limit, problem):
    """Chunks keep coming; the server answers 413 once the body passes the limit, long
    before the 64 MiB the client would send."""
    sent, answer = 0, b""
    chunk = b"%x\r\n%s\r\n" % (16 * KiB, b"y" * 16 * KiB)
    with socket.create_connection(("127.0.0.1", shop.port), timeout=10) as sock:
        sock.sendall(head("POST", path, shop, "Transfer-Encoding: chunked",
                          "Content-Type: application/json").encode() + b"\r\n")
        while sent < 64 * MiB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 16 * KiB
        status, headers, answer = read_response(sock)
    assert status == 413, answer
    assert sent < limit + 8 * MiB, f"{sent} bytes went in before the answer"
    assert headers["content-type"].startswith(
        "application/problem+json" if problem else "text/html")


def test_a_connection_goes_on_after_a_body_within_its_limit(shop):
    with socket.create_connection(("127.0.0.1", shop.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(head("POST", "/ipn/blockpn", shop, "Content-Length: 2",
                              "Content-Type: application/json").encode() + b"\r\n{}")
            status, headers, body = read_response(sock)
            assert status == 401, body


@pytest.mark.parametrize("method,path,extra,problem", [
    ("GET", "/v1/products", ["Transfer-Encoding: *"], True),
    ("POST", "/v1/products", ["Transfer-Encoding: gzip", "Content-Type: application/json"],
     True),
    ("POST", "/v1/products", ["Content-Length: 2", "Content-Length: 3"], True),
    ("POST", "/ipn/blockpn", ["Transfer-Encoding: gzip, chunked, gzip"], True),
    ("GET", "/test/", ["Transfer-Encoding: *"], False),
    ("POST", "/v1/products", ["Idempotency-Key: \x7f", "Content-Length: 0"], False),
])
def test_a_request_the_server_cannot_read_is_a_client_error(shop, method, path, extra,
                                                            problem):
    """An unknown transfer coding or a contradictory length is refused by the request
    parser before the app runs: 400, and problem JSON with a request id where programs
    read the answers."""
    status, headers, body = exchange(shop, head(method, path, shop, *extra))
    assert status == 400, body
    if problem:
        assert headers["content-type"] == "application/problem+json"
        answer = json.loads(body)
        assert answer["type"] == "invalid_request" and answer["status"] == 400
        assert answer["instance"] == path
        assert answer["request_id"] == headers["x-request-id"]
    else:
        assert headers["content-type"].startswith("text/plain")
