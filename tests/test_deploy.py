"""What docs/deploy.md promises an operator: client addresses behind a reverse proxy, and
one log line per request that a log shipper can parse."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import requests

from sellix_lite import logsetup
from sellix_lite.config import config_from_dict
from sellix_lite.web.app import create_app

from conftest import assert_problem, child_env, wait_until

WRONG_KEY = "sx_test_" + "W" * 40
THREE_FAILURES = "[limits]\nfailed_auths_per_minute_per_ip = 3\n"


def fail_authentication(server, forwarded_for: str, times: int = 1) -> list[int]:
    client = server.client(WRONG_KEY)
    return [client.get("/v1/products", headers={"X-Forwarded-For": forwarded_for}).status_code
            for _ in range(times)]


def test_without_a_proxy_a_spoofed_forwarded_for_changes_nothing(make_server):
    server = make_server(THREE_FAILURES)
    # Each guess claims another address; all of them count against the real one.
    statuses = [fail_authentication(server, f"203.0.113.{n}")[0] for n in range(3)]
    assert statuses == [401, 401, 401]
    refused = server.client(WRONG_KEY).get("/v1/products",
                                            headers={"X-Forwarded-For": "198.51.100.9"})
    assert_problem(refused, 429, "rate_limited")
    # Lines reach the log in order: once the last request's is there, so are the others.
    log = server.logged("GET /v1/products 429")
    assert "ip=127.0.0.1" in log
    assert "203.0.113." not in log


def test_behind_a_trusted_proxy_each_client_has_its_own_address(make_server):
    server = make_server(THREE_FAILURES, server_options='trusted_proxy = "127.0.0.1"')
    assert fail_authentication(server, "203.0.113.7", times=4) == [401, 401, 401, 429]
    # Another client behind the same proxy is not blocked by the first one's failures.
    assert fail_authentication(server, "198.51.100.9") == [401]
    assert "ip=203.0.113.7" in server.logged("ip=198.51.100.9")


def test_behind_a_proxy_only_the_address_the_proxy_saw_counts(make_server):
    """nginx appends the peer it saw to whatever the client sent: the last entry is the
    one to trust, and what a client prepends is ignored."""
    server = make_server(THREE_FAILURES, server_options='trusted_proxy = "127.0.0.1"')
    for n in range(3):
        fail_authentication(server, f"10.9.9.{n}, 203.0.113.7")
    assert fail_authentication(server, "10.1.1.1, 203.0.113.7") == [429]
    assert "ip=10.9.9." not in server.logged("GET /v1/products 429")


def test_behind_a_tls_proxy_cookies_are_secure(make_server):
    server = make_server(server_options='trusted_proxy = "127.0.0.1"\n'
                                        'public_url = "https://shop.example.com"')
    page = server.client().get("/dashboard/login", headers={"X-Forwarded-Proto": "https"})
    assert page.status_code == 200
    assert "Secure" in page.headers["Set-Cookie"]
    # The same request from anywhere but the proxy is plain HTTP, whatever it claims.
    direct = make_server().client().get("/dashboard/login",
                                        headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in direct.headers["Set-Cookie"]


@pytest.mark.parametrize("public_url, secure", [("https://shop.example.com", True),
                                                 ("http://127.0.0.1:8080", False), ("", False)])
def test_the_session_cookie_is_secure_when_the_shop_is_served_over_https(public_url, secure):
    config = config_from_dict({"server": {"public_url": public_url}})
    assert create_app(config, "k" * 40).config["SESSION_COOKIE_SECURE"] is secure


def test_json_log_has_one_parsable_line_per_request_without_secrets(make_server):
    server = make_server(server_options='log_format = "json"')
    secret = server.mint()
    response = server.client(secret).get("/v1/products?limit=1")
    assert response.status_code == 200
    lines = [json.loads(line) for line in server.logged('"path": "/v1/products"').splitlines()
             if line.startswith("{")]
    entry = next(line for line in lines if line.get("path") == "/v1/products")
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert isinstance(entry["duration_ms"], (int, float)) and entry["duration_ms"] >= 0
    assert entry["request_id"] == response.headers["X-Request-Id"]
    assert entry["api_key_id"].startswith("apik_")
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["query"] == "limit=1"
    assert secret not in server.output()


def test_json_log_redacts_the_tokens_of_links(make_server):
    server = make_server(server_options='log_format = "json"')
    requests.get(f"{server.url}/download/SEEKRIT-LINK?sig=SEEKRIT-SIG&x=1", timeout=30)
    log = server.logged('"query": "sig=[redacted]&x=1"')
    entry = next(json.loads(line) for line in log.splitlines() if "x=1" in line)
    assert entry["path"] == "/download/[redacted]"
    assert "SEEKRIT" not in log


class RecordingStream:
    """A stream that keeps each `write` call apart, to see how lines are batched."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


def batching_handler(delay: float) -> tuple[logsetup.BatchingHandler, RecordingStream]:
    stream = RecordingStream()
    handler = logsetup.BatchingHandler(stream, frozenset({"shop.access"}), delay)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    return handler, stream


def record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "msg": message, "levelno": level,
                                  "levelname": logging.getLevelName(level)})


def test_request_lines_are_written_together_after_a_short_delay():
    handler, stream = batching_handler(delay=0.2)
    try:
        for n in range(50):
            handler.handle(record("shop.access", f"GET /{n}"))
        assert stream.writes == []
        wait_until(lambda: stream.writes, timeout=5, what="the batch")
        assert stream.writes == ["".join(f"shop.access GET /{n}\n" for n in range(50))]
    finally:
        handler.close()


def test_any_other_record_writes_the_waiting_lines_at_once_and_in_order():
    handler, stream = batching_handler(delay=60)
    try:
        handler.handle(record("shop.access", "GET /a"))
        handler.handle(record("shop.access", "slow request", logging.WARNING))
        handler.handle(record("shop.access", "GET /b"))
        handler.handle(record("shop.server", "stopping"))
        assert "".join(stream.writes) == ("shop.access GET /a\nshop.access slow request\n"
                                          "shop.access GET /b\nshop.server stopping\n")
    finally:
        handler.close()


@pytest.mark.e2e
def test_a_normal_exit_writes_the_waiting_request_lines():
    script = ("import logging; from sellix_lite import logsetup; logsetup.configure('text'); "
              "logging.getLogger(logsetup.ACCESS_LOGGER).info('GET /last 200')")
    result = subprocess.run([sys.executable, "-c", script], env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "sellix_lite.access: GET /last 200" in result.stderr
