"""The BlockPN interface: what sellix-lite needs from its payment provider (docs/blockpn.md).

Three implementations speak it: the in-process sandbox (test mode), the HTTP client (live
mode), and — over HTTP — the `sellix-lite blockpn-sim` simulator serving the sandbox. Every
call that creates something carries our own id as `reference`; the provider treats a
repeated reference as the same request, so a retried call can't pay, refund or pay out twice.
Amounts are integers in the smallest unit of the fiat `currency`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    """The provider could not be reached, refused the call or failed; safe to retry later.

    `kind` says which, so the shop can tell the merchant what to fix: "unreachable" (no
    answer, or none in time), "credentials" (401 or 403: the API key was refused), "refused"
    (another 4xx: something about the request; `reason` is the provider's message) or
    "failed" (a 5xx, or an answer that can't be used). The message itself keeps the wire
    detail (the provider's status and message) for the log.
    """

    kind = "unreachable"

    def __init__(self, message: str, *, kind: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.kind = kind or self.kind
        self.reason = reason

    @property
    def diagnosis(self) -> str:
        """What happened, in words a merchant can act on."""
        if self.kind == "credentials":
            return "BlockPN rejected the shop's API key — check [blockpn] api_key"
        if self.kind == "refused":
            return f"BlockPN refused the request: {self.reason or self}"
        if self.kind == "failed":
            return "BlockPN failed to handle the request"
        return "BlockPN could not be reached"

    @property
    def retryable(self) -> bool:
        """Whether the same request may work later without the merchant changing anything."""
        return self.kind in ("unreachable", "failed")


class InvalidCallback(Exception):
    """An IPN callback whose signature does not verify."""


@dataclass(frozen=True)
class Invoice:
    id: str
    reference: str
    chain: str
    asset: str
    address: str
    amount_cents: int
    currency: str
    asset_amount: str      # exact amount to send, as a decimal string ("49.000000")
    paid_cents: int        # what was received so far, in the fiat currency
    asset_paid: str        # what was received so far, in the asset
    tx_hash: str | None    # the latest payment transaction
    status: str            # "pending" (unpaid or partly paid), "paid", "expired"
    expires_at: str


@dataclass(frozen=True)
class Payout:
    id: str
    reference: str
    chain: str
    asset: str
    amount_cents: int
    currency: str
    address: str
    memo: str | None
    status: str            # "queued", "broadcast", "confirmed", "failed"
    tx_hash: str | None
    failure_reason: str | None
    broadcast_at: str | None
    confirmed_at: str | None


@dataclass(frozen=True)
class Refund:
    id: str
    reference: str
    invoice_id: str
    amount_cents: int
    currency: str
    status: str            # "processing", "succeeded", "failed"
    destination_tx: str | None
    failure_reason: str | None


class BlockPN(Protocol):
    """Everything sellix-lite asks of BlockPN."""

    def open_invoice(self, *, reference: str, amount_cents: int, currency: str, chain: str,
                     asset: str, ttl_minutes: int, callback_url: str) -> Invoice:
        """Open (or, for a known reference, return) the invoice an order is paid through."""

    def get_invoice(self, invoice_id: str) -> Invoice:
        """The invoice as the provider knows it now."""

    def send_payout(self, *, reference: str, chain: str, asset: str, amount_cents: int,
                    currency: str, address: str, memo: str | None) -> Payout:
        """Queue a payout from the merchant's balance (a known reference returns it)."""

    def get_payout(self, payout_id: str) -> Payout:
        """The payout as the provider knows it now."""

    def send_refund(self, *, reference: str, invoice_id: str, amount_cents: int,
                    currency: str) -> Refund:
        """Refund part or all of a paid invoice to the payer (a known reference returns it)."""

    def get_refund(self, refund_id: str) -> Refund:
        """The refund as the provider knows it now."""

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Invoice:
        """The invoice an IPN callback reports; InvalidCallback when the signature is bad."""
