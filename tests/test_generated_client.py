"""A client generated from the served OpenAPI document works through typed fields.

`openapi-python-client` turns the running server's `GET /v1/openapi.json` into a Python
package; the package drives a test-mode license-key order from the product to the delivered
keys and a refund, reaching every value as a typed attribute: what an integrator's
generated client would do in their first hour.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mint_via_api

PACKAGE = "sellix_client"


def _ruff() -> str | None:
    """The ruff next to this Python or on PATH; generation formats with it only if found."""
    return shutil.which("ruff", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def generate(document: dict, folder: Path) -> Path:
    """Generate the client package from `document` into `folder`, offline; its path."""
    (folder / "openapi.json").write_text(json.dumps(document))
    ruff = _ruff()
    hooks = [f'"{ruff}" check . --fix-only', f'"{ruff}" format .'] if ruff else []
    (folder / "config.json").write_text(json.dumps({"post_hooks": hooks}))
    output = folder / PACKAGE
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate",
         "--path", str(folder / "openapi.json"), "--config", str(folder / "config.json"),
         "--meta", "none", "--output-path", str(output)],
        capture_output=True, text=True, timeout=120, cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout  # every schema became a model
    return output


@pytest.fixture(scope="module")
def client_package(server, tmp_path_factory):
    """The generated package, imported from the served document."""
    document = server.client().get("/v1/openapi.json").json()
    folder = tmp_path_factory.mktemp("generated-client")
    generate(document, folder)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _call(tag: str, operation: str):
    """The generated `sync` function of one operation (`api/<tag>/<operationId>.py`)."""
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}").sync


def _typed(server, client_package):
    """The generated models and a client of the server with a new test key."""
    return (importlib.import_module(f"{PACKAGE}.models"),
            client_package.AuthenticatedClient(base_url=server.url, token=mint_via_api(server)))


def test_a_license_key_order_through_typed_fields(server, client_package):
    models, client = _typed(server, client_package)

    product = _call("products", "create_product")(
        client=client, body=models.LicenseKeyProductCreate(
            name="Typed key", type_=models.LicenseKeyProductCreateType.LICENSE_KEY,
            price_cents=4900, currency=models.Currency.USD))
    assert isinstance(product, models.NewProduct), product
    key = f"TYPED-{secrets.token_hex(6).upper()}"
    imported = _call("products", "import_license_keys")(
        product.id, client=client, body=models.ImportLicenseKeysBody(keys=[key]))
    assert isinstance(imported, models.KeyImport) and imported.stock_after == 1

    order = _call("orders", "create_order")(client=client, body=models.CreateOrderBody(
        product_id=product.id, customer_email="typed@example.com"))
    assert isinstance(order, models.Order), order
    assert order.status == models.OrderStatus.AWAITING_PAYMENT
    paid = _call("test_helpers", "pay_test_order")(order.id, client=client)
    assert isinstance(paid, models.Order) and paid.status == models.OrderStatus.COMPLETED

    fetched = _call("orders", "get_order")(order.id, client=client)
    delivery = fetched.delivery
    assert isinstance(delivery, models.LicenseKeyDelivery), delivery
    assert delivery.keys == [key]  # a typed attribute, not an extra property
    assert delivery.state == models.LicenseKeyDeliveryState.DELIVERED
    assert not hasattr(delivery, "additional_properties")

    refund = _call("orders", "refund_order")(
        order.id, client=client, idempotency_key=secrets.token_hex(8),
        body=models.RefundOrderBody(reason=models.RefundOrderBodyReason.REQUESTED_BY_BUYER))
    assert isinstance(refund, models.Refund), refund
    assert refund.status == models.RefundStatus.PROCESSING
    assert refund.amount_cents == 4900 and refund.order_id == order.id


def test_a_free_order_comes_back_paid_with_no_payment(server, client_package):
    models, client = _typed(server, client_package)
    product = _call("products", "create_product")(
        client=client, body=models.AccountProductCreate(
            name="Typed gift", type_=models.AccountProductCreateType.ACCOUNT,
            price_cents=0, currency=models.Currency.USD, delivery_text="gift"))
    order = _call("orders", "create_order")(client=client, body=models.CreateOrderBody(
        product_id=product.id, customer_email="gift@example.com"))
    assert isinstance(order, models.Order), order
    assert order.status == models.OrderStatus.COMPLETED and order.payment is None


def test_generation_needs_no_network_and_ruff_only_when_installed(tmp_path, monkeypatch,
                                                                 server):
    """Offline generation from a file, with no formatting hook when ruff is absent."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no ruff (nor anything else) on PATH
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    output = generate(server.client().get("/v1/openapi.json").json(), tmp_path)
    assert (output / "models" / "license_key_delivery.py").exists()
    assert json.loads((tmp_path / "config.json").read_text()) == {"post_hooks": []}
