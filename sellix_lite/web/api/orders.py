"""/v1/orders, /v1/customers and the order test helpers (docs/api.md, Orders to Test helpers)."""

from __future__ import annotations

from ...services import (
    checkout,
    customers,
    fulfilment,
    key_replacements,
    metadata,
    orders,
    refunds,
    sandbox_helpers,
    subscriptions,
)
from . import bp
from .pipeline import operation, scope

TAG = "Orders"


@operation(bp, "GET", "/orders", summary="List orders", tag=TAG, ability="orders:read",
           query=orders.LIST,
           response="list:Order")
def list_orders(query):
    """Returns orders newest first, filtered by status, creation date and buyer email."""
    return orders.list_page(scope(), query)


@operation(bp, "POST", "/orders", summary="Create an order", tag=TAG,
           ability="orders:write", body=checkout.CREATE, status=201, errors=(502,),
           response="Order")
def create_order(query, body):
    """Reserves stock and opens a BlockPN invoice; the order awaits payment at
    `payment.checkout_url`."""
    return checkout.create_order(scope(), body)


@operation(bp, "POST", "/orders/quote", summary="Price an order", tag=TAG,
           ability="orders:write", body=checkout.CREATE, response="Quote")
def quote_order(query, body):
    """Prices the order this body would create, coupon included, with the same checks and
    refusals as creating it; reserves nothing."""
    return checkout.quote(scope(), body)


@operation(bp, "GET", "/orders/<order_id>", summary="Fetch an order", tag=TAG,
           ability="orders:read",
           response="Order")
def get_order(order_id, query):
    """Returns one order with its item, payment and delivery."""
    return orders.get(scope(), order_id)


@operation(bp, "PATCH", "/orders/<order_id>", summary="Update an order's metadata", tag=TAG,
           ability="orders:write", body=metadata.UPDATE,
           response="Order")
def update_order(order_id, query, body):
    """Merges `metadata` into the order's (a null value removes its key); nothing else of
    an order is changed this way."""
    return orders.update(scope(), order_id, body)


@operation(bp, "GET", "/customers", summary="List customers", tag="Customers",
           ability="customers:read", query=customers.LIST,
           response="list:Customer")
def list_customers(query):
    """Returns customers (one per email), newest first."""
    return customers.list_page(scope(), query)


@operation(bp, "GET", "/customers/<customer_id>", summary="Fetch a customer",
           tag="Customers", ability="customers:read",
           response="Customer")
def get_customer(customer_id, query):
    """Returns one customer with their orders, newest first."""
    return customers.get(scope(), customer_id)


@operation(bp, "PATCH", "/customers/<customer_id>", summary="Update a customer's metadata",
           tag="Customers", ability="customers:write", body=metadata.UPDATE,
           response="Customer")
def update_customer(customer_id, query, body):
    """Merges `metadata` into the customer's (a null value removes its key) and returns the
    customer with their orders."""
    return customers.update(scope(), customer_id, body)


@operation(bp, "POST", "/test_helpers/orders/<order_id>/pay", summary="Pay a test order",
           tag="Test helpers", ability="orders:write", body=sandbox_helpers.PAY,
           response="Order")
def pay_test_order(order_id, query, body):
    """Pays the sandbox invoice of a test order, in part when `amount_cents` is less."""
    return sandbox_helpers.pay_order(scope(), order_id, body)


@operation(bp, "POST", "/test_helpers/orders/<order_id>/expire",
           summary="Expire a test order", tag="Test helpers", ability="orders:write",
           response="Order")
def expire_test_order(order_id, query, body):
    """Lets the sandbox invoice of a test order expire now."""
    return sandbox_helpers.expire_order(scope(), order_id)


@operation(bp, "POST", "/orders/<order_id>/refund", summary="Refund an order", tag=TAG,
           ability="orders:write", body=refunds.CREATE, idempotency_required=True,
           response="Refund")
def refund_order(order_id, query, body):
    """Refunds what is left to refund, or `amount_cents` of it; the refund is `processing`
    until the provider settles it."""
    return refunds.create(scope(), order_id, body)


@operation(bp, "GET", "/orders/<order_id>/refunds", summary="List an order's refunds",
           tag=TAG, ability="orders:read", query=refunds.LIST,
           response="list:Refund")
def list_refunds(order_id, query):
    """Returns the order's refunds, newest first."""
    return refunds.list_for_order(scope(), order_id, query)


@operation(bp, "POST", "/orders/<order_id>/resend", summary="Re-send the delivery email",
           tag=TAG, ability="orders:write",
           response="Resent")
def resend_order(order_id, query, body):
    """Sends the delivery email of a delivered order again."""
    return fulfilment.resend(scope(), order_id)


@operation(bp, "POST", "/orders/<order_id>/fulfill", summary="Mark a physical order shipped",
           tag=TAG, ability="orders:write", body=fulfilment.FULFIL,
           response="Order")
def fulfill_order(order_id, query, body):
    """Marks a paid physical order shipped, with an optional tracking reference."""
    return fulfilment.fulfil(scope(), order_id, body)


@operation(bp, "POST", "/orders/<order_id>/replace", summary="Replace a delivered key",
           tag=TAG, ability="orders:write", body=key_replacements.REPLACE,
           idempotency_required=True, response="Order")
def replace_key(order_id, query, body):
    """Swaps one delivered key of a completed order for the oldest available key of the
    product's pool: the old key is burned and its license disabled, the new key gets a
    license and is emailed to the buyer."""
    return key_replacements.replace(scope(), order_id, body)


@operation(bp, "GET", "/subscriptions", summary="List subscriptions", tag="Subscriptions",
           ability="orders:read", query=subscriptions.LIST,
           response="list:Subscription")
def list_subscriptions(query):
    """Returns subscriptions, newest first."""
    return subscriptions.list_page(scope(), query)


@operation(bp, "GET", "/subscriptions/<subscription_id>", summary="Fetch a subscription",
           tag="Subscriptions", ability="orders:read",
           response="Subscription")
def get_subscription(subscription_id, query):
    """Returns one subscription."""
    return subscriptions.get(scope(), subscription_id)


@operation(bp, "POST", "/subscriptions/<subscription_id>/cancel",
           summary="Cancel a subscription", tag="Subscriptions", ability="orders:write",
           body=subscriptions.CANCEL, response="Subscription")
def cancel_subscription(subscription_id, query, body):
    """Stops the renewals: at the period end by default (no renewal is opened, an open one
    fails, and the subscription expires at the end), or now (`canceled`, its licenses
    expire)."""
    return subscriptions.cancel(scope(), subscription_id, body)
