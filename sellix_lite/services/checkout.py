"""Checkout: the one code path that creates an order (docs/api.md, Orders; docs/storefront.md).

`POST /v1/orders`, the storefront's checkout form and subscription renewals all call
`create_order`. It reserves stock and records the order in one transaction, opens the
BlockPN invoice outside any transaction (it may be a network call), then records the
invoice and `order.created` in a second transaction. If the provider can't be reached or
refuses, the order fails, its reservation is released, and the 502 and a WARNING log line
say what BlockPN did; a crash between the steps leaves a `pending`
order that the payment job fails and releases after a few minutes.

An order whose total is 0 opens no invoice: the transaction that reserves its stock also
marks it paid and delivers it, with the events of a paid order.

A coupon is priced in (`coupons.price`) and its redemption counted in the transaction that
reserves the stock. `quote` prices the same body, refused as `create_order` would refuse
it, without reserving anything.
"""

from __future__ import annotations

import json
import logging

from .. import db as storage
from ..clock import now_iso
from ..config import Config
from ..countries import CODES as COUNTRY_CODES
from ..currencies import MAX_AMOUNT_CENTS
from ..db import write_txn
from ..errors import ApiError, Unprocessable
from ..ids import new_id
from ..providers.blockpn import ProviderError
from ..validation import Email, Enum, Integer, Metadata, Object, Schema, String
from . import blacklist, coupons, custom_fields, customers, fulfilment, inventory, orders
from .payments import provider_for
from .scope import Scope

log = logging.getLogger("sellix_lite.checkout")

SHIPPING_ADDRESS = Schema(
    name=String(required=True, min_length=1, max_length=200, strip=True),
    line1=String(required=True, min_length=1, max_length=200, strip=True),
    line2=String(max_length=200, strip=True),
    city=String(required=True, min_length=1, max_length=100, strip=True),
    state=String(max_length=100, strip=True),
    postal_code=String(required=True, min_length=1, max_length=20, strip=True),
    country=Enum(sorted(COUNTRY_CODES), required=True,
                 description="ISO 3166-1 alpha-2 code, e.g. `DE`."),
)

CREATE = Schema(
    product_id=String(required=True, min_length=1, max_length=64,
                      description="The product to buy.", example="prod_01J2PVQR41"),
    qty=Integer(minimum=1, default=1, description="How many units (at most "
                                                  "`limits.max_qty_per_order`)."),
    customer_email=Email(required=True, description="Where the goods are sent.",
                         example="buyer@example.com"),
    chain=String(min_length=1, max_length=20, description="Chain to pay on; with `asset`, "
                 "one of the shop's accepted pairs (default: the first).", example="tron"),
    asset=String(min_length=1, max_length=20, description="Asset to pay with.",
                 example="USDT"),
    shipping_address=Object(SHIPPING_ADDRESS, description="Where a physical product ships "
                            "(required for physical products, refused for others)."),
    coupon=String(**coupons.CODE, nullable=True,
                  description="A coupon code (any letter case); `null`: none.",
                  example="SPRING25"),
    metadata=Metadata(),
    custom_fields=custom_fields.Values(),
    customer_ip=blacklist.CUSTOMER_IP,
)


def _check_product(product: dict | None, params: dict) -> None:
    """The product must be on sale, deliverable, and given what its type needs."""
    if product is None or product["status"] != "active":
        raise Unprocessable(errors={"product_id": "is not a product for sale"})
    if product["price_cents"] * params["qty"] > MAX_AMOUNT_CENTS:
        raise Unprocessable(errors={"qty": f"makes a total over {MAX_AMOUNT_CENTS} (the "
                                           "largest amount an order may have)"})
    if product["type"] == "file_download" and product["file_sha256"] is None:
        raise Unprocessable(errors={"product_id": "has no file to deliver yet"})
    physical = product["type"] == "physical"
    if physical and "shipping_address" not in params:
        raise Unprocessable(errors={"shipping_address": "is required for physical products"})
    if not physical and "shipping_address" in params:
        raise Unprocessable(errors={"shipping_address": "only applies to physical products"})


class ProviderUnavailable(ApiError):
    status, type, title = 502, "server_error", "Payment provider unavailable"


def create_order(scope: Scope, body: dict, *, buyer: blacklist.Buyer = blacklist.API_CHECKOUT,
                 subscription_id: str | None = None, ttl_minutes: int | None = None) -> dict:
    """Create an order awaiting payment and return it (with `payment.checkout_url`); a free
    order comes back paid, and delivered when its kind is delivered at once.

    Renewals name their subscription and keep their invoice open until the period ends.
    """
    config = scope.config
    params = _validate(body, config)
    if subscription_id is None:  # a renewal goes on with a subscription already sold
        blacklist.refuse_if_listed(scope, params, buyer)
    with write_txn(scope.db):
        order = _reserve(scope, params, subscription_id)
        if order["total_cents"] == 0:
            return orders.present(scope.db, _give(scope, order), scope.links)
        # Refusing here rolls the reservation back: nothing is kept.
        provider = provider_for(scope.db, scope.mode, config)
    try:
        invoice = provider.open_invoice(
            reference=order["id"], amount_cents=order["total_cents"],
            currency=order["currency"], chain=order["chain"], asset=order["asset"],
            ttl_minutes=ttl_minutes or config.blockpn.invoice_ttl_minutes,
            callback_url=f"{config.public_url}/ipn/blockpn")
    except ProviderError as exc:
        _not_created(scope, order, exc)
    with write_txn(scope.db):
        row = orders.save(scope.db, order, {
            "status": "awaiting_payment", "invoice_id": invoice.id,
            "pay_address": invoice.address, "asset_amount": invoice.asset_amount,
            "expires_at": invoice.expires_at, "updated_at": now_iso(),
        }, scope.links, "order.created")
    return orders.present(scope.db, row, scope.links)


def _give(scope: Scope, order: dict) -> dict:
    """Mark a free order paid at once and deliver it as a payment would (in the caller's
    transaction): `order.created`, then `order.paid` and `order.delivered` from delivery."""
    now = now_iso()
    order = orders.save(scope.db, order, {"status": "paid", "paid_at": now, "updated_at": now},
                        scope.links, "order.created")
    return fulfilment.start(scope.db, order, scope.config, scope.links)


def _not_created(scope: Scope, order: dict, exc: ProviderError) -> None:
    """Fail the pending order, log what BlockPN did, and answer 502 saying it."""
    with write_txn(scope.db):
        orders.fail(scope.db, order, f"{exc.diagnosis} ({exc})", scope.links)
    log.warning("%s; order %s was not created (%s)", exc.diagnosis, order["id"], exc)
    advice = ", try again shortly" if exc.retryable else ""
    raise ProviderUnavailable(f"{exc.diagnosis}; the order was not created{advice}") from None


def _validate(body: dict, config: Config) -> dict:
    params = CREATE.validate(body)
    params["customer_email"] = params["customer_email"].lower()
    errors = {}
    if params["qty"] > config.limits.max_qty_per_order:
        errors["qty"] = f"at most {config.limits.max_qty_per_order} per order"
    accepted = config.blockpn.accepted
    chain, asset = params.get("chain"), params.get("asset")
    if chain is None and asset is None:
        chain, asset = accepted[0].split(":")
    if f"{chain}:{asset}" not in accepted:
        errors["asset"] = f"pay with one of: {', '.join(accepted)}"
    if errors:
        raise Unprocessable(errors=errors)
    return {**params, "chain": chain, "asset": asset}


def _reserve(scope: Scope, params: dict, subscription_id: str | None) -> dict:
    """Record the order (pending) with its stock reserved and its customer (in the caller's
    transaction)."""
    product = scope.get("products", params["product_id"])
    _check_product(product, params)
    price = _price(scope, product, params)
    values = custom_fields.carried_to_renewal(scope.db, subscription_id, product) \
        if subscription_id else custom_fields.values_for(product, params.get("custom_fields", {}))
    now, order_id = now_iso(), new_id("ord")
    inventory.reserve(scope.db, order_id, product, params["qty"],
                      owner_email=scope.config.shop.owner_email)
    customer_id = customers.record_order(scope.db, scope.mode, params["customer_email"])
    row = {
        "id": order_id, "mode": scope.mode, "status": "pending",
        "product_id": product["id"], "product_name": product["name"],
        "product_type": product["type"], "qty": params["qty"],
        "unit_price_cents": product["price_cents"], **price.order_fields(),
        "currency": product["currency"], "customer_id": customer_id,
        "customer_email": params["customer_email"], "chain": params["chain"],
        "asset": params["asset"], "created_at": now, "updated_at": now,
        "shipping_address": json.dumps(params["shipping_address"])
        if "shipping_address" in params else None,
        "subscription_id": subscription_id,
        "metadata": json.dumps(params.get("metadata", {})),
        "custom_fields": json.dumps(values),
        "customer_ip": params.get("customer_ip"),
    }
    storage.insert(scope.db, "orders", row)
    coupons.redeem(scope.db, price.coupon, row)
    return scope.get("orders", order_id)


def _price(scope: Scope, product: dict, params: dict) -> coupons.Price:
    return coupons.price(scope, product, params["qty"], params.get("coupon"),
                         params["customer_email"])


def quote(scope: Scope, body: dict) -> dict:
    """What `create_order` would charge for `body`, refused as it would refuse it; reserves
    nothing."""
    params = _validate(body, scope.config)
    blacklist.refuse_if_listed(scope, params, blacklist.API_QUOTE)
    product = scope.get("products", params["product_id"])
    _check_product(product, params)
    price = _price(scope, product, params)
    custom_fields.values_for(product, params.get("custom_fields", {}))
    inventory.check_available(product, params["qty"])
    if price.total_cents:
        provider_for(scope.db, scope.mode, scope.config)  # refuses when live payments are off
    return price.quote()
