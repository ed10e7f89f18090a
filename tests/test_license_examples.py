"""The examples of docs/licenses.md run as a merchant's program would, against a real shop:
the Python one with this interpreter, the JavaScript one with Node. They activate, check
offline (also with the shop stopped), renew a refused lease online, stop at a disabled
license or a removed machine, deactivate, and back off on 429. The code the page shows is
the code of the files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from conftest import GENEROUS_LIMITS, REPO, Server
from support import json_body, key_product, pay, place_order

DOC = REPO / "docs" / "licenses.md"
EXAMPLES = REPO / "docs" / "examples"
LANGUAGES = {"python": "license_client.py", "js": "license_client.mjs"}
LICENSED = re.compile(r"licensed \((?P<how>[^)]+)\): (?P<license>lic_\w+) until "
                      r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n")


def interpreter(language: str) -> list[str]:
    """How to run the example: this Python, or a Node.js of version 18 or later."""
    if language == "python":
        return [sys.executable]
    node = shutil.which("node")
    if node is None:
        pytest.fail("the JavaScript example needs Node.js 18 or later (`node`); on Debian: "
                    "apt-get install nodejs")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.fail(f"the JavaScript example needs Node.js 18 or later; found {version}")
    return [node]


class Program:
    """The example as the buyer's copy of the merchant's program: one machine, one state
    file."""

    def __init__(self, language: str, shop: Server, product_id: str, folder: Path):
        self.command = [*interpreter(language), str(EXAMPLES / LANGUAGES[language])]
        self.state = folder / f"{language}-license.json"
        self.env = {"SHOP_URL": shop.url, "PRODUCT_ID": product_id,
                    "LICENSE_STATE": str(self.state), "LICENSE_ALLOW_TEST": "1",
                    "PATH": "/usr/bin:/bin"}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=60)

    def licensed(self, *args: str, **env: str) -> str:
        """Run a command that must find the program licensed; how it did."""
        result = self.run(*args, **env)
        assert result.returncode == 0, result.stderr
        return LICENSED.fullmatch(result.stdout)["how"]

    def refused(self, *args: str, **env: str) -> str:
        """Run a command that must refuse to run the program; why."""
        result = self.run(*args, **env)
        assert result.returncode == 1, result.stdout
        assert result.stdout == ""
        assert result.stderr.startswith("not licensed: "), result.stderr
        return result.stderr

    def stored(self) -> dict:
        return json.loads(self.state.read_text())


def sold_key(client, **product_fields) -> tuple[dict, str, str]:
    """A test-mode product, a key of it sold, and that key's license id."""
    product, _ = key_product(client, 1, **product_fields)
    order = pay(client, place_order(client, product["id"])["id"])
    (key,) = order["delivery"]["keys"]
    found = json_body(client.get("/v1/licenses", params={"order_id": order["id"]}))["data"]
    return product, key, found[0]["id"]


def tampered(lease: str) -> str:
    """The lease with a longer life written into it, under the old signature."""
    header, _, signature = lease.split(".")
    claims = jwt.decode(lease, options={"verify_signature": False})
    payload = jwt.utils.base64url_encode(json.dumps(
        {**claims, "exp": claims["exp"] + 86400 * 365}).encode()).decode()
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_example_activates_checks_offline_renews_and_deactivates(language, make_server,
                                                                     tmp_path):
    shop = make_server(GENEROUS_LIMITS)
    merchant = shop.client(shop.mint())
    product, key, license_id = sold_key(merchant, activation_limit=1)
    program = Program(language, shop, product["id"], tmp_path)

    assert program.licensed("activate", key) == "activated"
    stored = program.stored()
    assert stored["instance_id"].startswith("lin_")
    assert stored["jwks"] == json_body(shop.client().get("/.well-known/jwks.json"))
    assert program.licensed("activate", key) == "activated"  # the same machine: no new one
    assert program.licensed("check") == "offline"

    # What the program checks beyond the signature.
    assert "test-mode key" in program.refused("check", LICENSE_ALLOW_TEST="0")
    assert "license of" in program.refused("check", PRODUCT_ID="prod_another")

    # A lease changed on disk is refused and a genuine one fetched in its place.
    program.state.write_text(json.dumps({**stored, "lease": tampered(stored["lease"])}))
    assert program.licensed("check") == "renewed online"
    renewed = program.stored()["lease"]
    jwt.decode(renewed, jwt.PyJWK(stored["jwks"]["keys"][0]), algorithms=["EdDSA"],
               issuer=shop.url)

    # With the shop stopped, the stored lease carries the program; a refused one can't.
    shop.stop()
    assert program.licensed("check") == "offline"
    assert "unreachable" in program.refused("validate")
    genuine = program.stored()
    program.state.write_text(json.dumps({**genuine, "lease": tampered(genuine["lease"])}))
    assert "unreachable" in program.refused("check")
    program.state.write_text(json.dumps(genuine))
    shop.start()

    # Disabled by the merchant: the lease still verifies offline until it ends, and the
    # next validation stops the program and forgets the lease.
    json_body(merchant.patch(f"/v1/licenses/{license_id}", json={"status": "disabled"}))
    assert program.licensed("check") == "offline"
    assert "the license was disabled" in program.refused("validate")
    assert not program.state.exists()
    assert "disabled" in program.refused("activate", key)
    json_body(merchant.patch(f"/v1/licenses/{license_id}", json={"status": "active"}))

    # Deactivated, the machine's activation is free again; its old instance is unknown.
    assert program.licensed("activate", key) == "activated"
    kept = program.stored()
    result = program.run("deactivate")
    assert (result.returncode, result.stdout) == (0, "deactivated\n"), result.stderr
    assert not program.state.exists()
    assert json_body(merchant.get(f"/v1/licenses/{license_id}"))["activations"] == 0
    program.state.write_text(json.dumps(kept))
    assert "no longer activated" in program.refused("validate")
    assert "not activated on this machine" in program.refused("check")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_example_backs_off_when_the_shop_limits_checks(language, make_server, tmp_path):
    shop = make_server(GENEROUS_LIMITS + "license_checks_per_minute_per_ip = 1\n")
    product, key, _ = sold_key(shop.client(shop.mint()))
    program = Program(language, shop, product["id"], tmp_path)
    assert program.licensed("activate", key) == "activated"
    assert re.search(r"too many checks; retry in \d+ s", program.refused("validate"))
    assert program.licensed("check") == "offline"  # the lease needs no call


@pytest.mark.parametrize("language, fence", [("python", "python"), ("js", "js")])
def test_the_code_the_page_shows_is_the_examples_code(language, fence):
    blocks = re.findall(rf"^```{fence}\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks
    source = (EXAMPLES / LANGUAGES[language]).read_text()
    for block in blocks:
        assert block in source
