"""Check a sellix-lite license from your program (docs/licenses.md): activate once, keep the
signed lease, verify it offline at every start, re-validate it online before it ends, and
deactivate on uninstall.

HTTP with the standard library; the lease is verified with PyJWT (`pip install "pyjwt[crypto]"`).

    python license_client.py activate LICENSE_KEY | check | validate | deactivate

SHOP_URL and PRODUCT_ID would be constants of your program; here they come from the
environment, as does LICENSE_STATE, the file the license is kept in.
"""

import hashlib
import json
import os
import platform
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jwt

SHOP_URL = os.environ["SHOP_URL"]  # your shop's public URL: the leases' issuer
PRODUCT_ID = os.environ["PRODUCT_ID"]  # the product this program is
STATE = Path(os.environ.get("LICENSE_STATE", "license.json"))
# Keys bought in the test shop are for your own tests; a release build refuses them.
ALLOW_TEST_KEYS = os.environ.get("LICENSE_ALLOW_TEST") == "1"
LEEWAY = 60  # seconds of clock difference tolerated


class NotLicensed(Exception):
    """The program may not run; the message says why."""


class Unreachable(NotLicensed):
    """The shop did not answer now (no network, a 5xx, or 429: too many checks)."""


def post(path: str, body: dict) -> tuple[int, dict]:
    """POST JSON to the shop's public license API: its status and JSON answer."""
    request = urllib.request.Request(SHOP_URL + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 429:
            wait = error.headers["Retry-After"]
            raise Unreachable(f"too many checks; retry in {wait} s") from None
        if error.code >= 500:
            raise Unreachable(f"the shop answered {error.code}") from None
        return error.code, json.load(error)
    except OSError as error:
        raise Unreachable(f"the shop is unreachable: {error}") from None


def fingerprint() -> str:
    """What tells this machine from another, hashed: the same machine activates once."""
    return hashlib.sha256(f"{uuid.getnode()}:{platform.node()}".encode()).hexdigest()


def fetch_jwks() -> dict:
    """The shop's public keys, fetched once and kept with the lease (pinned)."""
    with urllib.request.urlopen(SHOP_URL + "/.well-known/jwks.json", timeout=10) as response:
        return json.load(response)


def verify(state: dict) -> dict:
    """The lease's claims, if it is genuine, current and for this program and machine."""
    try:
        kid = jwt.get_unverified_header(state["lease"])["kid"]
        key = jwt.PyJWKSet.from_dict(state["jwks"])[kid]
        claims = jwt.decode(state["lease"], key, algorithms=["EdDSA"], issuer=SHOP_URL,
                            leeway=LEEWAY, options={"require": ["iss", "sub", "iat", "exp"]})
    except (jwt.PyJWTError, KeyError) as error:
        raise NotLicensed(f"the lease is not valid: {error!r}") from None
    lic = claims["lic"]
    if lic["status"] != "active" or lic["product_id"] != PRODUCT_ID:
        raise NotLicensed(f"the lease is for a {lic['status']} license of {lic['product_id']}")
    if lic["instance_id"] != state["instance_id"]:
        raise NotLicensed("the lease is for another machine")
    if lic["mode"] != "live" and not ALLOW_TEST_KEYS:
        raise NotLicensed("this is a test-mode key, which only works in the test shop")
    return claims


def save(state: dict, lease: str) -> dict:
    """Keep a new lease, after checking it (and fetching the keys again if it names a new
    one)."""
    state = {**state, "lease": lease}
    if not any(key["kid"] == jwt.get_unverified_header(lease)["kid"]
               for key in state["jwks"]["keys"]):
        state["jwks"] = fetch_jwks()
    claims = verify(state)
    STATE.write_text(json.dumps(state))
    return claims


def activate(license_key: str) -> dict:
    status, answer = post("/v1/licenses/activate", {
        "license_key": license_key, "instance_name": platform.node() or "this computer",
        "fingerprint": fingerprint()})
    if status not in (200, 201):
        raise NotLicensed(answer.get("errors", {}).get("license_key") or answer["detail"])
    state = {"license_key": license_key, "instance_id": answer["instance"]["id"],
             "jwks": fetch_jwks()}
    return save(state, answer["lease"])


REASONS = {"disabled": "the license was disabled", "expired": "the license has expired",
           "unknown_instance": "this machine is no longer activated"}


def validate(state: dict) -> dict:
    """Ask the shop whether the license still holds, for a fresh lease."""
    status, answer = post("/v1/licenses/validate", {
        "license_key": state["license_key"], "instance_id": state["instance_id"]})
    if status == 200 and answer["valid"]:
        return save(state, answer["lease"])
    if status in (200, 404):  # not valid, or no such key: the old lease is honoured no more
        STATE.unlink()
    raise NotLicensed(REASONS.get(answer.get("reason"), answer.get("detail")))


def check(state: dict) -> tuple[dict, str]:
    """At start: the stored lease, offline, while less than half of its time has passed;
    else a fresh one from the shop — or the stored one while the shop can't answer."""
    try:
        claims = verify(state)
    except NotLicensed:
        claims = None
    if claims and time.time() < (claims["iat"] + claims["exp"]) / 2:
        return claims, "offline"
    try:
        return validate(state), "renewed online"
    except Unreachable:
        if claims is None:
            raise
        return claims, "offline: the shop did not answer"


def deactivate(state: dict) -> None:
    """On uninstall: free this machine's activation."""
    status, answer = post("/v1/licenses/deactivate", {
        "license_key": state["license_key"], "instance_id": state["instance_id"]})
    if status != 200:
        raise NotLicensed(answer["detail"])
    STATE.unlink()


def main(command: str, *args: str) -> None:
    if command == "activate":
        claims, how = activate(*args), "activated"
    else:
        if not STATE.exists():
            raise NotLicensed("not activated on this machine")
        state = json.loads(STATE.read_text())
        if command == "deactivate":
            deactivate(state)
            print("deactivated")
            return
        claims, how = check(state) if command == "check" else (validate(state), "validated")
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))
    print(f"licensed ({how}): {claims['sub']} until {until}")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except NotLicensed as error:
        sys.exit(f"not licensed: {error}")
