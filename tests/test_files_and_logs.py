"""What the server leaves on disk and in its log: files only its own user can read, and
access-log lines without the tokens of buyers' links, through the real server."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import requests

from conftest import GENEROUS_LIMITS, running_server, wait_until
from support import json_body, key_product, make_product, pay, place_order


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A server with a paid file_download order, whose delivery email is in the outbox."""
    with running_server(tmp_path_factory.mktemp("private")) as server:
        client = server.admin
        product = make_product(client, type="file_download")
        upload = client.put(f"/v1/products/{product['id']}/file?filename=goods.zip",
                            data=b"the goods", headers={"Content-Type":
                                                        "application/octet-stream"})
        assert upload.status_code == 200, upload.text
        server.order = pay(client, place_order(client, product["id"])["id"])
        server.product = product
        keys, _ = key_product(client, 1)
        server.key_order = pay(client, place_order(client, keys["id"])["id"])
        yield server


def test_the_server_writes_its_files_for_its_own_user_only(shop):
    data = shop.root / "data"
    outbox = wait_until(lambda: list((data / "outbox").glob("*.eml")), what="an outbox email")
    (upload,) = (data / "files" / shop.product["id"]).iterdir()
    folders = [data, data / "outbox", data / "files", upload.parent]
    files = [data / "sellix.db", data / "sellix.db-wal", data / "sellix.db-shm",
             data / "secret_key", upload, *outbox]
    assert {str(p): oct(mode_of(p)) for p in folders} == {str(p): "0o700" for p in folders}
    assert {str(p): oct(mode_of(p)) for p in files} == {str(p): "0o600" for p in files}


def test_a_backup_is_private(shop, tmp_path):
    result = shop.cli("backup", tmp_path / "copy.db")
    assert result.returncode == 0, result.stderr
    assert mode_of(tmp_path / "copy.db") == 0o600


def test_init_makes_a_private_data_folder(make_server):
    server = make_server(start=False)
    result = server.cli("init")
    assert result.returncode == 0, result.stderr
    data = server.root / "data"
    assert mode_of(data) == 0o700
    assert [p.name for p in data.iterdir() if mode_of(p) != 0o600] == []
    assert {p.name for p in data.iterdir()} >= {"sellix.db", "secret_key"}


def test_serve_warns_when_the_data_folder_is_open_to_others(make_server):
    server = make_server(start=False)
    assert server.cli("init").returncode == 0
    (server.root / "data").chmod(0o755)
    server.start()
    line = server.logged("chmod 700")
    assert re.search(r"WARNING.* the data folder \S+/data is readable by other users "
                     r"\(mode 0755\)", line)


def test_a_private_data_folder_gets_no_warning(make_server):
    server = make_server()
    assert "readable by other users" not in server.logged("serving on")


# --- the access log -------------------------------------------------------------------------

def test_access_log_lines_carry_no_token(shop):
    order = json_body(shop.admin.get(f"/v1/orders/{shop.order['id']}"))
    download = order["delivery"]["download_url"]
    download_token = download.rsplit("/", 1)[1]
    assert requests.get(download, timeout=30).content == b"the goods"
    key_order = shop.key_order
    order_page = key_order["payment"]["checkout_url"]
    page_token = re.search(r"[?&]t=([^&]+)", order_page).group(1)
    assert requests.get(order_page, timeout=30).status_code == 200
    requests.get(f"{shop.url}/download/{download_token}/extra", timeout=30)
    requests.get(f"{shop.url}/?token=SEEKRIT-1&sig=SEEKRIT-2&page=2", timeout=30)

    log = shop.logged("page=2")
    for token in (download_token, page_token, "SEEKRIT"):
        assert token not in log
    assert "GET /download/[redacted] 200" in log
    assert "GET /download/[redacted] 404" in log
    assert f"GET /test/order/{key_order['id']}?t=[redacted] 200" in log
    assert "GET /?token=[redacted]&sig=[redacted]&page=2 200" in log


def test_a_crash_on_a_download_link_logs_no_token(make_server):
    server = make_server(GENEROUS_LIMITS)
    client = server.client(server.mint())
    product = make_product(client, type="file_download")
    assert client.put(f"/v1/products/{product['id']}/file", data=b"goods", headers={
        "Content-Type": "application/octet-stream"}).status_code == 200
    order = pay(client, place_order(client, product["id"])["id"])
    link = order["delivery"]["download_url"]
    server.execute("ALTER TABLE orders RENAME TO orders_gone")  # the view's query fails
    assert requests.get(link, timeout=30).status_code == 500
    log = server.logged("Traceback")
    assert "unhandled error in GET /download/" in log
    assert link.rsplit("/", 1)[1] not in log
