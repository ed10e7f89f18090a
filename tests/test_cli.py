"""The command line (README.md, Command line), through real subprocesses."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sellix_lite.migrations import latest_version
from sellix_lite.services.api_keys import ABILITIES

from conftest import child_env, free_port, run_cli

SECRET = re.compile(r"^sx_test_[0-9A-Za-z]{32,}$")
LIVE_SECRET = re.compile(r"^sx_live_[0-9A-Za-z]{32,}$")


def one_line_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The single stderr line of a command that failed as expected."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


# --- init and migrate ----------------------------------------------------------------------


def test_init_creates_the_data_folder_database_and_secret_key(tmp_path):
    result = ok(run_cli("init", cwd=tmp_path))
    data = tmp_path / "sellix-data"
    database = data / "sellix.db"
    key = data / "secret_key"
    assert data.is_dir()
    assert database.is_file()
    assert key.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 32
    # It says where they are, on stderr.
    assert str(data.resolve()) in result.stderr
    assert str(database.resolve()) in result.stderr
    assert str(key.resolve()) in result.stderr
    conn = sqlite3.connect(database)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "api_keys" in tables

    # A second init keeps the secret key.
    before = key.read_text()
    ok(run_cli("init", cwd=tmp_path))
    assert key.read_text() == before


def test_init_with_a_config_file_uses_its_folder(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text('[storage]\npath = "store/shop.db"\n')
    work = tmp_path / "work"
    work.mkdir()
    result = ok(run_cli("--config", config, "init", cwd=work))
    assert (etc / "store" / "shop.db").is_file()
    assert (etc / "store" / "secret_key").is_file()
    assert str((etc / "store" / "shop.db").resolve()) in result.stderr
    assert list(work.iterdir()) == []


def test_init_with_a_configured_secret_key_writes_no_key_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[security]\nsecret_key = "configured-secret-key-0123456789"\n')
    result = ok(run_cli("--config", config, "init", cwd=tmp_path))
    assert (tmp_path / "sellix-data" / "sellix.db").is_file()
    assert not (tmp_path / "sellix-data" / "secret_key").exists()
    assert "configured-secret-key" not in result.stdout


def test_migrate_prints_the_schema_version(tmp_path):
    result = ok(run_cli("migrate", cwd=tmp_path))
    assert result.stdout.strip() == f"schema version {latest_version()}"
    assert (tmp_path / "sellix-data" / "sellix.db").is_file()
    # Again: nothing pending, same version.
    result = ok(run_cli("migrate", cwd=tmp_path))
    assert result.stdout.strip() == f"schema version {latest_version()}"


def test_migrate_upgrades_an_old_database(tmp_path):
    from sellix_lite import db as storage, migrations as schema

    (tmp_path / "sellix-data").mkdir()
    old = storage.connect(tmp_path / "sellix-data" / "sellix.db")
    schema.migrations.apply(old, stop_before="m0002_idempotency")
    old.close()
    result = ok(run_cli("migrate", cwd=tmp_path))
    assert result.stdout.strip() == f"schema version {latest_version()}"


def test_migrate_refuses_a_database_from_a_newer_version(tmp_path):
    ok(run_cli("migrate", cwd=tmp_path))
    conn = sqlite3.connect(tmp_path / "sellix-data" / "sellix.db")
    with conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                     "VALUES ('sellix_lite', 'm9999_future', '2099-01-01')")
    conn.close()
    line = one_line_error(run_cli("migrate", cwd=tmp_path))
    assert line.startswith("error:")
    assert "m9999_future" in line


# --- keys ----------------------------------------------------------------------------------


def test_keys_mint_list_revoke(tmp_path):
    minted = ok(run_cli("keys", "mint", "--name", "x", "--all", "--mode", "test",
                        cwd=tmp_path))
    lines = minted.stdout.splitlines()
    assert lines, minted.stderr
    secret = lines[-1]
    assert SECRET.match(secret), minted.stdout
    assert "Traceback" not in minted.stderr

    as_json = ok(run_cli("keys", "mint", "--name", "machine", "--mode", "test",
                         "--ability", "orders:read", "--ability", "products:write", "--json",
                         cwd=tmp_path))
    key = json.loads(as_json.stdout)
    assert SECRET.match(key["secret"])
    assert key["id"].startswith("apik_")
    assert key["name"] == "machine"
    assert key["mode"] == "test"
    assert key["abilities"] == ["orders:read", "products:write"]
    assert key["revoked_at"] is None
    assert key["last_used_at"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", key["created_at"])
    assert "secret_hash" not in key

    listed = ok(run_cli("keys", "list", cwd=tmp_path))
    rows = [line for line in listed.stdout.splitlines() if line.strip()]
    assert len(rows) == 2
    assert secret not in listed.stdout and key["secret"] not in listed.stdout
    [machine_row] = [line for line in rows if key["id"] in line]
    assert "machine" in machine_row
    assert "active" in machine_row and "revoked" not in machine_row
    [x_row] = [line for line in rows if key["id"] not in line]
    assert re.search(r"\bx\b", x_row)

    revoked = ok(run_cli("keys", "revoke", key["id"], cwd=tmp_path))
    assert key["id"] in revoked.stderr

    listed = ok(run_cli("keys", "list", cwd=tmp_path))
    [machine_row] = [line for line in listed.stdout.splitlines() if key["id"] in line]
    assert "revoked" in machine_row
    [x_row] = [line for line in listed.stdout.splitlines()
               if line.strip() and key["id"] not in line]
    assert "revoked" not in x_row and "active" in x_row

    listed_json = json.loads(ok(run_cli("keys", "list", "--json", cwd=tmp_path)).stdout)
    by_id = {row["id"]: row for row in listed_json}
    assert by_id[key["id"]]["revoked_at"] is not None
    assert all("secret" not in row and "secret_hash" not in row for row in listed_json)


def test_keys_mint_defaults_to_live_with_every_ability(tmp_path):
    result = ok(run_cli("keys", "mint", "--name", "live one", "--all", "--json",
                        cwd=tmp_path))
    key = json.loads(result.stdout)
    assert LIVE_SECRET.match(key["secret"])
    assert key["mode"] == "live"
    assert sorted(key["abilities"]) == sorted(ABILITIES)


def test_keys_mint_usage_errors_exit_2(tmp_path):
    neither = run_cli("keys", "mint", "--name", "x", cwd=tmp_path)
    assert neither.returncode == 2, neither.stderr
    assert "Traceback" not in neither.stderr
    assert neither.stdout == ""
    both = run_cli("keys", "mint", "--name", "x", "--all", "--ability", "orders:read",
                   cwd=tmp_path)
    assert both.returncode == 2, both.stderr
    unknown = run_cli("keys", "mint", "--name", "x", "--ability", "root", cwd=tmp_path)
    assert unknown.returncode == 2, unknown.stderr
    bad_mode = run_cli("keys", "mint", "--name", "x", "--all", "--mode", "prod", cwd=tmp_path)
    assert bad_mode.returncode == 2, bad_mode.stderr
    # No key was minted by any of them.
    listed = run_cli("keys", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_keys_revoke_unknown_id_is_one_line_and_exit_1(tmp_path):
    line = one_line_error(run_cli("keys", "revoke", "apik_nosuchkey", cwd=tmp_path))
    database = tmp_path.resolve() / "sellix-data" / "sellix.db"
    assert line == f"error: no API key apik_nosuchkey in {database}"


# --- backup --------------------------------------------------------------------------------


def test_backup_while_the_server_runs(make_server, tmp_path):
    server = make_server()
    secrets = [server.mint(name=f"key {n}") for n in range(3)]
    ids = {row["id"] for row in json.loads(ok(server.cli("keys", "list", "--json")).stdout)}
    assert len(ids) == len(secrets)
    # The server is answering while the copy is made.
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200

    target = tmp_path / "backups" / "copy.db"
    target.parent.mkdir()
    result = ok(server.cli("backup", target))
    assert f"backed up {server.database} to {target}" in result.stderr
    assert not target.with_name(target.name + ".partial").exists()

    conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = {r[0] for r in conn.execute("SELECT id FROM api_keys")}
        version = conn.execute("SELECT count(*) FROM _sqlite_migrations "
                               "WHERE migration_set = 'sellix_lite'").fetchone()[0]
    finally:
        conn.close()
    assert copied == ids
    assert version == latest_version()
    # The server still serves after the backup.
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_backup_to_an_existing_path_is_refused(make_server, tmp_path):
    server = make_server(start=False)
    ok(server.cli("migrate"))
    target = tmp_path / "existing.db"
    target.write_bytes(b"precious")
    result = server.cli("backup", target)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "exist" in lines[0]
    assert target.read_bytes() == b"precious"


def test_backup_without_a_database_is_one_line_and_exit_1(tmp_path):
    line = one_line_error(run_cli("backup", tmp_path / "copy.db", cwd=tmp_path))
    assert line.startswith("error:")
    assert not (tmp_path / "copy.db").exists()


# --- serve ---------------------------------------------------------------------------------


class Serve:
    """`sellix-lite serve` with no config at all, in an empty folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.log_path = folder.parent / f"{folder.name}-serve.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sellix_lite", "serve", "--port", str(self.port)],
            cwd=folder, env=child_env(), stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> requests.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.output()}")
            try:
                return requests.get(self.url + "/healthz", timeout=1)
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"serve did not answer:\n{self.output()}")

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def serve_in_empty_folder(tmp_path):
    started = []

    def start() -> Serve:
        folder = tmp_path / f"empty{len(started)}"
        folder.mkdir()
        started.append(Serve(folder))
        return started[-1]

    yield start
    for process in started:
        process.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_with_no_config_at_all(serve_in_empty_folder, sig):
    serve = serve_in_empty_folder()
    response = serve.wait_ready()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"

    assert (serve.folder / "sellix-data" / "sellix.db").is_file()
    assert (serve.folder / "sellix-data" / "secret_key").is_file()
    assert f"serving on http://127.0.0.1:{serve.port}" in serve.output()

    code = serve.stop(sig)
    output = serve.output()
    assert code == 0, output
    assert "stopped" in output
    assert "Traceback" not in output
    # Logged once, in this order.
    assert output.index("serving on") < output.index("stopped")


def test_second_serve_on_the_same_database_is_refused(make_server):
    server = make_server()
    second = server.cli("serve", "--port", free_port(), timeout=30)
    line = one_line_error(second)
    assert line.startswith("error:")
    assert "already serving" in line
    # The first one is unharmed.
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert server.stop() == 0


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", port, cwd=tmp_path, timeout=30)
    line = one_line_error(result)
    assert line.startswith("error:")
    assert str(port) in line


def test_serve_after_a_refused_start_can_start(tmp_path):
    """A failed start (port in use) leaves no lock behind."""
    folder = tmp_path / "shop"
    folder.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        one_line_error(run_cli("serve", "--port", taken.getsockname()[1], cwd=folder,
                               timeout=30))
    serve = Serve(folder)
    try:
        assert serve.wait_ready().status_code == 200
        assert serve.stop(signal.SIGTERM) == 0
    finally:
        serve.kill()


# --- --config anywhere, and the database named on stderr ----------------------------------


@pytest.fixture
def elsewhere(tmp_path):
    """A config file in etc/ putting the database in etc/store/, and an empty work folder
    to run from (where the default database would land)."""
    etc, work = tmp_path / "etc", tmp_path / "work"
    etc.mkdir()
    work.mkdir()
    config = etc / "shop.toml"
    config.write_text('[storage]\npath = "store/shop.db"\n')
    return config, (etc / "store" / "shop.db").resolve(), work


def prepared(config: Path, work: Path) -> str:
    """Migrate the configured database and mint a key in it; returns the key id."""
    ok(run_cli("--config", config, "migrate", cwd=work))
    minted = ok(run_cli("--config", config, "keys", "mint", "--name", "k", "--all", "--json",
                        cwd=work))
    return json.loads(minted.stdout)["id"]


@pytest.mark.parametrize("args", [
    ["init", "--config", "{config}"],
    ["migrate", "--config={config}"],
    ["keys", "mint", "--name", "k", "--all", "--config", "{config}"],
    ["keys", "--config", "{config}", "list"],
    ["keys", "list", "--config", "{config}"],
    ["keys", "revoke", "{key}", "--config", "{config}"],
    ["backup", "--config", "{config}", "{work}/copy.db"],
    ["admin", "set-password", "--config", "{config}"],
])
def test_config_after_the_command_is_used_and_the_database_named(elsewhere, args):
    config, database, work = elsewhere
    key = prepared(config, work) if args[0] in ("keys", "backup", "admin") else ""
    args = [a.format(config=config, key=key, work=work) for a in args]
    result = ok(run_cli(*args, cwd=work, input="a long enough passphrase 12345\n"))
    assert str(database) in result.stderr, result.stderr
    assert not (work / "sellix-data").exists()
    assert str(database) not in result.stdout


def test_keys_mint_names_the_database_and_leaves_the_secret_alone_on_stdout(elsewhere):
    config, database, work = elsewhere
    result = ok(run_cli("keys", "mint", "--name", "k", "--all", "--mode", "test",
                        "--config", config, cwd=work))
    assert re.search(rf"^minted apik_\w+ \(test\) .* in {re.escape(str(database))}$",
                     result.stderr, re.MULTILINE), result.stderr
    assert SECRET.match(result.stdout.splitlines()[-1])
    assert result.stdout.strip() == result.stdout.splitlines()[-1]


def test_every_command_accepts_config_after_its_name():
    from sellix_lite.cli import cli

    def commands(group, path=()):
        for name, command in group.commands.items():
            yield (*path, name), command
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))

    missing = [" ".join(path) for path, command in commands(cli)
               if "--config" not in {opt for p in command.params for opt in p.opts}]
    assert missing == []


def test_serve_with_config_after_the_command(elsewhere):
    config, database, work = elsewhere
    port = free_port()
    config.write_text(config.read_text() + f"[server]\nport = {port}\n")
    log = work.parent / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "sellix_lite", "serve", "--config",
                                    str(config)], cwd=work, env=child_env(), stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        from conftest import wait_for_health

        wait_for_health(f"http://127.0.0.1:{port}", process, output=log.read_text)
        assert database.is_file()
        assert f"(database {database}," in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


# --- links follow --host and --port --------------------------------------------------------


def test_serve_port_flag_reaches_every_link(tmp_path):
    """With public_url empty, the links the server builds use the port it was given on the
    command line, not the config's (here the default 8080)."""
    from conftest import Server
    from support import key_product, pay, place_order, wait_for_status

    shop = Server(tmp_path)
    shop.config_path.write_text('[storage]\npath = "data/sellix.db"\n')  # port 8080
    log = shop.log_path.open("ab")
    shop.log = log
    shop.process = subprocess.Popen(
        [sys.executable, "-m", "sellix_lite", "serve", "--config", str(shop.config_path),
         "--host", "127.0.0.1", "--port", str(shop.port)],
        cwd=tmp_path, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        from conftest import wait_for_health

        wait_for_health(shop.url, shop.process, output=shop.output)
        client = shop.client(shop.mint(mode="test"))
        product, _ = key_product(client, 1)
        order = place_order(client, product["id"])
        assert order["payment"]["checkout_url"].startswith(f"{shop.url}/test/order/")
        pay(client, order["id"])
        wait_for_status(client, order["id"], "completed")
        bodies = [body for (body,) in shop.query(
            "SELECT body_text FROM emails WHERE related_id = ?", (order["id"],))]
        assert bodies and all(f"{shop.url}/test/order/{order['id']}?t=" in body
                              for body in bodies)
        assert ":8080" not in " ".join(bodies)
        page = requests.get(order["payment"]["checkout_url"], timeout=10)
        assert page.status_code == 200
    finally:
        shop.stop(signal.SIGKILL)
