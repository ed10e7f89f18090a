"""Fixtures of both tiers.

The fast tier runs the app in process: `app` (the factory on a migrated database in
`tmp_path`), `client` (Flask's test client), `v1` (the same with a test-mode key), the
settable `clock` and `tick` (a job run by hand). The end-to-end tier runs a real
`sellix-lite serve` subprocess on a free loopback port (`server`, `make_server`), the CLI,
the BlockPN simulator, SMTP and Chromium; its tests are marked `e2e`
(`pytest -m "not e2e"` runs the fast tier alone).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sellix_lite import db as storage, jobs
from sellix_lite.clock import clock as app_clock
from sellix_lite.config import config_from_dict
from sellix_lite.server import prepare
from sellix_lite.services import api_keys
from sellix_lite.web.app import create_app

REPO = Path(__file__).resolve().parent.parent
# Screenshots of the pages the browser tests visit (kept out of git).
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PROBLEM = "application/problem+json"
ULID = r"[0-9A-HJKMNP-TV-Z]{26}"


def assert_problem(response, status: int, slug: str) -> dict:
    """Check a response (of either tier) is an RFC 9457 problem (docs/api.md, Errors);
    returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"] == slug
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == urlsplit(response.request.url).path
    assert re.fullmatch(rf"req_{ULID}", body["request_id"])
    assert response.headers["X-Request-Id"] == body["request_id"]
    return body


def wait_until(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra) -> dict:
    """The environment for a child process running this checkout's code."""
    env = {k: v for k, v in os.environ.items() if k != "SELLIX_LITE_CONFIG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args, cwd: Path, input: str | None = None, timeout: float = 60,
            **env) -> subprocess.CompletedProcess:
    """Run `sellix-lite ARGS` in `cwd` and return the finished process."""
    require_e2e("the command line")
    return subprocess.run([sys.executable, "-m", "sellix_lite", *map(str, args)], cwd=cwd,
                          env=child_env(**env), input=input, capture_output=True, text=True,
                          timeout=timeout)


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 30,
                    output=lambda: "") -> None:
    """Wait until the server at `url` answers /healthz; fail if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{output()}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not start:\n{output()}")


class DatabaseFile:
    """Straight access to a shop's SQLite file, from outside the app."""

    def __init__(self, database: Path):
        self.database = database

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows read straight from the file, read-only."""
        conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def execute(self, *statements: str, params: tuple = ()) -> None:
        """Write to the file directly (fault injection, clock tricks)."""
        conn = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        try:
            for statement in statements:
                conn.execute(statement, params)
        finally:
            conn.close()


class Server(DatabaseFile):
    """A `sellix-lite serve` subprocess with its own data folder and config file."""

    def __init__(self, root: Path, config: str = "", server_options: str = ""):
        """`config`: extra TOML sections; `server_options`: extra keys of [server]."""
        super().__init__(root / "data" / "sellix.db")
        self.root = root
        self.port = free_port()
        self.config_path = root / "config.toml"
        self.config_path.write_text(
            f"[server]\nport = {self.port}\n{server_options}\n"
            f'[storage]\npath = "data/sellix.db"\n{config}\n')
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = root / f"serve-{self.port}.log"

    def cli(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return run_cli("--config", self.config_path, *args, cwd=self.root, **kwargs)

    def mint(self, *abilities: str, mode: str = "test", name: str = "test key") -> str:
        """Mint a key through the CLI and return its secret."""
        flags = [f"--ability={a}" for a in abilities] or ["--all"]
        result = self.cli("keys", "mint", "--name", name, "--mode", mode, *flags)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def start(self, timeout: float = 30) -> Server:
        require_e2e("a server")
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sellix_lite", "--config", str(self.config_path), "serve"],
            cwd=self.root, env=child_env(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_health(self.url, self.process, timeout, self.output)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: the crash a power cut or the OOM killer causes."""
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logged(self, text: str) -> str:
        """The server's log once `text` is in it: request lines are written in batches."""
        def log_with_text() -> str | None:
            log = self.output()
            return log if text in log else None

        return wait_until(log_with_text, what=f"{text!r} in the server's log")

    def client(self, secret: str | None = None) -> Api:
        return Api(self.url, secret)


class Api(requests.Session):
    """A requests session bound to the server's URL and an API key."""

    def __init__(self, base_url: str, secret: str | None):
        super().__init__()
        self.base_url = base_url
        if secret:
            self.headers["Authorization"] = f"Bearer {secret}"

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base_url + url, *args, **kwargs)


def _start_servers(root_factory):
    servers = []

    def make(config: str = "", root: Path | None = None, start: bool = True,
             server_options: str = "") -> Server:
        server = Server(root or root_factory(), config, server_options)
        servers.append(server)
        return server.start() if start else server

    return make, servers


@pytest.fixture
def make_server(tmp_path):
    """Factory for servers of one test; each is killed at the end of the test."""
    counter = iter(range(1000))
    make, servers = _start_servers(lambda: _fresh_dir(tmp_path, next(counter)))
    yield make
    for server in servers:
        server.stop(signal.SIGKILL)


def _fresh_dir(parent: Path, index: int) -> Path:
    path = parent / f"server{index}"
    path.mkdir()
    return path


# Limits high enough that a module's many tests never trip them; rate-limit tests start a
# server of their own.
GENEROUS_LIMITS = "[limits]\nreads_per_minute = 100000\nwrites_per_minute = 100000\n"


@contextmanager
def running_server(root: Path, config: str = GENEROUS_LIMITS):
    """A started server with a root key minted through the CLI (`server.admin`); killed on
    leaving. `config`: its TOML sections."""
    server = Server(root, config)
    try:
        server.start()
        server.admin = server.client(server.mint(name="root"))
        yield server
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """A running server shared by a test module, with a root key minted through the CLI."""
    with running_server(tmp_path_factory.mktemp("server")) as server:
        yield server


@pytest.fixture(scope="module")
def live(server) -> Api:
    """A live-mode client of the module's shared server, with every ability."""
    return server.client(server.mint(mode="live", name="live"))


def mint_via_api(server: Server, *abilities: str, mode: str = "test") -> str:
    """A new key minted by the root key (of `mode`'s root when live) — faster than the CLI."""
    root = server.admin if mode == "test" else server.client(server.mint(mode="live"))
    from sellix_lite.services.api_keys import ABILITIES

    response = root.post("/v1/api-keys", json={
        "name": "test key", "abilities": list(abilities or ABILITIES), "mode": mode})
    assert response.status_code == 201, response.text
    return response.json()["secret"]


@pytest.fixture
def test_key(server) -> str:
    """A fresh test-mode key with every ability."""
    return mint_via_api(server)


@pytest.fixture
def api(server, test_key) -> Api:
    """A client authenticated with a fresh test-mode key with every ability."""
    return server.client(test_key)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system (Debian's package), driven by Playwright."""
    require_e2e("a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """The folder screenshots are saved in."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# --- the two tiers -----------------------------------------------------------------------

# Fixtures that start a process (a server, the BlockPN simulator, SMTP, Chromium, a package
# build), here or in a module: a test using one is end-to-end.
E2E_FIXTURES = frozenset({
    "server", "make_server", "live", "api", "test_key", "browser",  # here
    "shop", "live_shop", "slow_live_shop", "sim", "diagnosed_sim", "ninja", "fuzz_server",
    "conformance_server", "limited", "client_with_keys", "sessions_shop", "wheel",
    "zipapp",  # modules'
})
# Modules whose every test crosses processes, some without any of the fixtures above.
E2E_MODULES = frozenset({"test_cli", "test_generated_client", "test_packaging",
                         "test_reliability", "test_upgrades"})
_current: dict = {}  # the test being set up, run or torn down


def pytest_collection_modifyitems(items):
    """Mark the end-to-end tier; the rest is the fast tier."""
    for item in items:
        if E2E_FIXTURES.intersection(item.fixturenames) or item.module.__name__ in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _current["item"] = item


def require_e2e(what: str) -> None:
    """Fail a fast-tier test that starts `what`, so the fast tier stays fast."""
    item = _current.get("item")
    if item is not None and item.get_closest_marker("e2e") is None:
        raise AssertionError(f"{item.nodeid} starts {what}: mark it e2e "
                             "(or start it through a fixture in conftest.E2E_FIXTURES)")


# --- the fast tier: the app in process -------------------------------------------------

class InProcessResponse(TestResponse):
    """A test client's answer, read as a `requests` one is, so that the helpers in
    support.py serve both tiers."""

    def json(self):  # a method in requests, a property in werkzeug
        return self.get_json()


class ShopClient(FlaskClient):
    """Flask's test client, answering with InProcessResponse and taking `params=` for the
    query string as `requests` does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_wrapper = InProcessResponse

    def open(self, *args, params: dict | None = None, **kwargs):
        if params is not None:
            kwargs["query_string"] = params
        return super().open(*args, **kwargs)

    def keyed(self, *abilities: str, mode: str = "test") -> ShopClient:
        """A client of the same app calling with a new key of `mode` (every ability unless
        named)."""
        db = storage.connect(self.application.extensions["sellix"].config.database_path)
        try:
            key = api_keys.mint(db, name="test key", mode=mode,
                                abilities=list(abilities or api_keys.ABILITIES))
        finally:
            db.close()
        client = self.application.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key['secret']}"
        return client


@pytest.fixture
def clock():
    """The app's clock, stopped at the current second; the test moves it (`advance`,
    `set`) and it follows the system's time again afterwards."""
    app_clock.set(datetime.now(UTC).replace(microsecond=0))
    yield app_clock
    app_clock.reset()


@pytest.fixture
def app_config() -> str:
    """The in-process app's TOML sections; a module overrides this fixture to change them."""
    return GENEROUS_LIMITS


@pytest.fixture
def app(tmp_path, app_config):
    """The app from the factory on a freshly migrated database in `tmp_path`."""
    config = config_from_dict(tomllib.loads(app_config), base_dir=tmp_path)
    secret_key, _ = prepare(config)
    app = create_app(config, secret_key)
    app.test_client_class = ShopClient
    return app


@pytest.fixture
def client(app) -> ShopClient:
    return app.test_client()


@pytest.fixture
def v1(client) -> ShopClient:
    """A client calling with a new test-mode key with every ability."""
    return client.keyed()


@pytest.fixture
def tick(app):
    """`tick(job_id)` runs that job once, now, as the scheduler would; returns its result."""
    runtime = app.extensions["sellix"]
    ctx = jobs.JobContext(runtime.config, app.config["SECRET_KEY"], boot_id=runtime.boot_id)
    return lambda job_id: jobs.tick(job_id, ctx)


@pytest.fixture
def app_db(app) -> DatabaseFile:
    """The in-process app's database file, read as `Server.query` reads a server's."""
    return DatabaseFile(app.extensions["sellix"].config.database_path)


# --- receivers of webhooks and dynamic deliveries ------------------------------------------

@pytest.fixture
def receiver():
    """A recording HTTP receiver on a loopback port (support.Receiver), closed afterwards."""
    from support import Receiver  # support imports this module

    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def module_receiver():
    """The `receiver` of a whole module, for module-scoped shops to send to."""
    from support import Receiver

    receiver = Receiver()
    yield receiver
    receiver.close()
