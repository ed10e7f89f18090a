"""Signed leases (docs/licenses.md): what the shop signs verifies with PyJWT — an independent
JWT library — and the key served at /.well-known/jwks.json; the lease ends after
`licenses.lease_hours` or with its license; the key is made once, survives restarts, and a
backup file alone carries it to a restored shop."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import timedelta

import jwt
import pytest

from sellix_lite import db as storage
from sellix_lite.clock import iso, utcnow
from sellix_lite.services import leases
from sellix_lite.web.surfaces import is_machine_facing, surface_of

from conftest import GENEROUS_LIMITS, PROBLEM, Server
from support import json_body, key_product, pay, place_order

JWKS = "/.well-known/jwks.json"
HOUR = 3600


def sold_license(v1) -> dict:
    """The license row of a key just sold in test mode."""
    product, _ = key_product(v1, 1)
    order = pay(v1, place_order(v1, product["id"])["id"])
    found = json_body(v1.get("/v1/licenses", params={"order_id": order["id"]}))["data"]
    return {key: found[0][key]
            for key in ("id", "key", "status", "product_id", "mode", "expires_at")}


def issue(app, license_row: dict, instance_id: str | None = "lin_1") -> str:
    """A lease issued by the app's own service, outside a request."""
    runtime = app.extensions["sellix"]
    db = storage.connect(runtime.config.database_path)
    try:
        return leases.issue(runtime.scope(db, license_row["mode"]), license_row, instance_id)
    finally:
        db.close()


def served_key(client) -> dict:
    """The one JWK the shop publishes."""
    (key,) = json_body(client.get(JWKS))["keys"]
    return key


def verify(lease: str, jwk: dict, issuer: str) -> dict:
    """The lease's claims, as PyJWT checks them against `jwk`: EdDSA only, the issuer, and
    the times."""
    return jwt.decode(lease, jwt.PyJWK(jwk), algorithms=["EdDSA"], issuer=issuer,
                      options={"require": ["iss", "sub", "iat", "exp"]})


def public_url(app) -> str:
    return app.extensions["sellix"].config.public_url


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64_json(value: dict) -> str:
    return b64url(json.dumps(value).encode())


def test_the_jwks_publishes_one_ed25519_key_any_program_may_read(client):
    response = client.get(JWKS)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Security-Policy" not in response.headers  # read by programs, not pages
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert key == {**key, "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA"}
    assert len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
    # The kid is the key's thumbprint (RFC 7638): SHA-256 of its required members, in order.
    members = f'{{"crv":"Ed25519","kty":"OKP","x":"{key["x"]}"}}'.encode()
    assert key["kid"] == b64url(hashlib.sha256(members).digest())
    assert client.get(JWKS).json() == response.json()


def test_errors_under_well_known_are_problem_json(client):
    assert surface_of(JWKS) == "well-known" and is_machine_facing(JWKS)
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == PROBLEM
    assert client.post(JWKS).status_code == 405


def test_a_lease_verifies_with_pyjwt_and_the_served_key(app, client, v1, clock):
    license_row = sold_license(v1)
    lease = issue(app, license_row, "lin_01ABC")
    jwk = served_key(client)

    header = jwt.get_unverified_header(lease)
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": jwk["kid"]}
    now = int(clock.time())
    assert verify(lease, jwk, public_url(app)) == {
        "iss": public_url(app), "sub": license_row["id"], "iat": now, "exp": now + 72 * HOUR,
        "lic": {"status": "active", "product_id": license_row["product_id"],
                "instance_id": "lin_01ABC", "mode": "test"}}
    # Another shop's issuer is refused.
    with pytest.raises(jwt.InvalidIssuerError):
        verify(lease, jwk, "https://other-shop.example")


def test_a_lease_without_instance_says_so(app, v1):
    lease = issue(app, sold_license(v1), None)
    assert jwt.decode(lease, options={"verify_signature": False})["lic"]["instance_id"] is None


@pytest.mark.parametrize("app_config", [GENEROUS_LIMITS + "[licenses]\nlease_hours = 5\n"])
def test_the_lease_lasts_the_configured_hours(app, v1, clock):
    claims = jwt.decode(issue(app, sold_license(v1)), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 5 * HOUR
    assert claims["iat"] == int(clock.time())


def test_a_lease_never_outlives_its_license(app, client, v1, clock):
    license_row = sold_license(v1)
    ends = utcnow() + timedelta(hours=10)
    expiring = {**license_row, "expires_at": iso(ends)}
    claims = verify(issue(app, expiring), served_key(client), public_url(app))
    assert claims["exp"] == int(ends.timestamp())
    later = {**license_row, "expires_at": iso(ends + timedelta(days=30))}
    claims = verify(issue(app, later), served_key(client), public_url(app))
    assert claims["exp"] == claims["iat"] + 72 * HOUR


def test_the_lease_ends_for_pyjwt_when_its_time_is_up(app, client, v1, clock):
    clock.advance(-73 * HOUR)  # issued 73 hours ago: ended an hour ago
    lease = issue(app, sold_license(v1))
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(lease, served_key(client), public_url(app))


def test_a_tampered_lease_fails_verification(app, client, v1):
    lease = issue(app, sold_license(v1))
    jwk = served_key(client)
    header, payload, signature = lease.split(".")
    claims = jwt.decode(lease, options={"verify_signature": False})
    longer = b64_json({**claims, "exp": claims["exp"] + 365 * 24 * HOUR})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{longer}.{signature}", jwk, public_url(app))
    live = b64_json({**claims, "lic": {**claims["lic"], "mode": "live"}})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{live}.{signature}", jwk, public_url(app))
    # A token that names another algorithm is refused before any key is tried.
    forged = f"{b64_json({'alg': 'HS256', 'typ': 'JWT', 'kid': jwk['kid']})}.{payload}.{signature}"
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(forged, jwk, public_url(app))


def test_the_key_stays_the_same_for_a_new_app_on_the_same_database(app, client, v1):
    from sellix_lite.web.app import create_app

    lease = issue(app, sold_license(v1))
    again = create_app(app.extensions["sellix"].config, app.config["SECRET_KEY"])
    again.test_client_class = type(client)
    jwk = served_key(again.test_client())
    assert jwk == served_key(client)
    verify(lease, jwk, public_url(app))


def test_concurrent_first_use_makes_exactly_one_key(app, app_db):
    path = app.extensions["sellix"].config.database_path
    assert app_db.query("SELECT count(*) FROM signing_keys") == [(0,)]
    start, kids, failures = threading.Barrier(8), [], []

    def first_use():
        db = storage.connect(path)
        try:
            start.wait()
            kids.append(leases.signing_key(db).kid)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(kids) == 8 and len(set(kids)) == 1
    assert app_db.query("SELECT kid FROM signing_keys") == [(kids[0],)]


# --- end to end: leases from the public API of a real server, a restart, a restored backup -----

def activate(server: Server, license_key: str, fingerprint: str = "machine-1") -> dict:
    """The public activation, as the merchant's program calls it (no API key)."""
    return json_body(server.client().post("/v1/licenses/activate", json={
        "license_key": license_key, "instance_name": "build box",
        "fingerprint": fingerprint}), 201)


def test_activation_and_validation_return_leases_pyjwt_verifies_with_the_served_keys(server):
    license_row = sold_license(server.admin)
    activated = activate(server, license_row["key"])
    instance_id = activated["instance"]["id"]
    # PyJWT's own client fetches the set and picks the key by the lease's kid.
    keys = jwt.PyJWKClient(server.url + JWKS)
    lease = activated["lease"]
    claims = jwt.decode(lease, keys.get_signing_key_from_jwt(lease), algorithms=["EdDSA"],
                        issuer=server.url)
    assert claims == {
        "iss": server.url, "sub": license_row["id"], "iat": claims["iat"],
        "exp": claims["iat"] + 72 * HOUR,
        "lic": {"status": "active", "product_id": license_row["product_id"],
                "instance_id": instance_id, "mode": "test"}}

    validated = json_body(server.client().post("/v1/licenses/validate", json={
        "license_key": license_row["key"], "instance_id": instance_id}))
    assert (validated["valid"], validated["reason"]) == (True, None)
    lease = validated["lease"]
    claims = jwt.decode(lease, keys.get_signing_key_from_jwt(lease), algorithms=["EdDSA"],
                        issuer=server.url)
    assert claims["lic"]["instance_id"] == instance_id


SHOP_URL = "https://shop.example"  # both servers are the same shop, as after a real restore


def test_a_backup_file_alone_restores_the_key_and_leases_keep_verifying(make_server,
                                                                      tmp_path):
    options = f'public_url = "{SHOP_URL}"'
    shop = make_server(GENEROUS_LIMITS, server_options=options)
    license_row = sold_license(shop.client(shop.mint()))
    jwk = served_key(shop.client())
    first_lease = activate(shop, license_row["key"])["lease"]
    shop.stop()
    shop.start()
    assert served_key(shop.client()) == jwk  # a restart keeps the key

    backup = tmp_path / "nightly.db"
    result = shop.cli("backup", backup)
    assert result.returncode == 0, result.stderr
    # Only the backup file goes to the new data folder: not the secret key.
    restored = make_server(GENEROUS_LIMITS, start=False, server_options=options)
    restored.database.parent.mkdir(mode=0o700)
    result = restored.cli("restore", backup)
    assert result.returncode == 0, result.stderr
    restored.start()

    restored_jwk = served_key(restored.client())
    assert restored_jwk == jwk
    verify(first_lease, restored_jwk, SHOP_URL)
    verify(activate(restored, license_row["key"], "machine-2")["lease"], jwk, SHOP_URL)
