"""BlockPN: chains and addresses, the sandbox ledger, and the HTTP client driving a real
`sellix-lite blockpn-sim` process."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sellix_lite import chains
from sellix_lite.chains import asset_amount, sandbox_address, sandbox_tx_hash, validate_address
from sellix_lite.db import connect
from sellix_lite.migrations import migrate
from sellix_lite.providers.blockpn import InvalidCallback, Invoice, ProviderError
from sellix_lite.providers.http_client import (
    SIGNATURE_HEADER,
    BlockPNClient,
    callback_body,
    sign_callback,
)
from sellix_lite.providers.sandbox import Refused, SandboxLedger, SandboxProvider, UnknownObject

from conftest import assert_problem, child_env, free_port, wait_for_health
from support import (
    SIM_API_KEY,
    SIM_IPN_SECRET,
    Simulator,
    event_types,
    fetch,
    invoice_of,
    json_body,
    key_product,
    live_mode_shop,
    make_product,
    place_order,
    wait_for_status,
)

EVM_EXAMPLE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own examples
VALID = {
    "tron": ["TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"],  # the USDT contract
    "ethereum": [EVM_EXAMPLE, "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                 "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
                 "0x52908400098527886E0F7030069857D2E4169EE7",   # all caps: no checksum
                 "0xde709f2102306220921060314715629080e2fb77"],  # all lower: no checksum
    "base": [EVM_EXAMPLE], "polygon": [EVM_EXAMPLE], "bsc": [EVM_EXAMPLE],
    "bitcoin": [
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",  # the genesis block's
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",  # P2SH
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",  # BIP-173, upper case
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",  # P2WSH
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",  # BIP-350 taproot
    ],
    "solana": ["11111111111111111111111111111111",  # the system program
               "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"],
}
INVALID = {
    "tron": ["TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6T",  # one letter changed: bad checksum
             "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",  # valid base58check, wrong version byte
             "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6", EVM_EXAMPLE, ""],
    "ethereum": ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # checksum broken
                 "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae",   # 39 digits
                 "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00",  # no 0x
                 "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
                 "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"],
    "base": ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d358"],
    "polygon": ["0XfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"],
    "bsc": ["0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6Fb"],
    "bitcoin": [
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb",  # bad checksum
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",  # base58check, tron's version byte
        # BIP-350's invalid vectors
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # bech32 for v1
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # bech32m for v0
        "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",  # 'o' in data
        "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",  # version 17
        "bc1pw5dgrnzv",  # 1-byte program
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # 16-byte v0 program
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",  # padding
        "bc1gmk9yu",  # empty data
        "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",  # unknown hrp
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",  # testnet
        "bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",  # mixed case
        # valid strings of later witness versions, refused: not spendable yet
        "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "BC1SW50QGDZ25J",
    ],
    "solana": ["1111111111111111111111111111111",  # 31 bytes
               "0OIl1111111111111111111111111111",  # not in the alphabet
               "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DAA", EVM_EXAMPLE],
}


# --- chains -----------------------------------------------------------------------------

@pytest.mark.parametrize("chain,address",
                         [(c, a) for c, addresses in VALID.items() for a in addresses])
def test_known_valid_addresses(chain, address):
    assert validate_address(chain, address) is None


@pytest.mark.parametrize("chain,address",
                         [(c, a) for c, addresses in INVALID.items() for a in addresses])
def test_known_invalid_addresses(chain, address):
    problem = validate_address(chain, address)
    assert problem and problem.startswith("must be")


def test_every_chain_has_examples_and_an_unknown_chain_is_refused():
    assert set(VALID) == set(INVALID) == set(chains.CHAINS)
    assert validate_address("dogecoin", "D8vFz4p1L37jdg47HXKtSHA5uYLYxbGgPD") == \
        "unknown chain 'dogecoin'"
    assert validate_address("tron", None) == "must be a non-empty string"


@pytest.mark.parametrize("chain", sorted(chains.CHAINS))
def test_sandbox_addresses_and_hashes_are_valid_and_deterministic(chain):
    address = sandbox_address(chain, "inv_1")
    assert validate_address(chain, address) is None
    assert sandbox_address(chain, "inv_1") == address != sandbox_address(chain, "inv_2")
    tx_hash = sandbox_tx_hash(chain, "inv_1")
    shape = {"solana": r"[1-9A-HJ-NP-Za-km-z]{80,90}", "tron": r"[0-9a-f]{64}",
             "bitcoin": r"[0-9a-f]{64}"}.get(chain, r"0x[0-9a-f]{64}")
    assert re.fullmatch(shape, tx_hash)


def test_the_table_is_complete():
    for chain, assets in chains.CHAINS.items():
        for asset in assets:
            assert chains.supports(chain, asset)
            assert asset in chains.DECIMALS and asset in chains.USD_PER_UNIT
    assert not chains.supports("bitcoin", "USDT")
    assert chains.MEMO_CHAINS <= set(chains.CHAINS)


@pytest.mark.parametrize("cents,currency,asset,expected", [
    (4900, "USD", "USDT", "49.000000"),
    (4900, "USD", "USDC", "49.000000"),
    (4900, "USD", "BTC", "0.00081667"),     # 0.000816666… rounded up
    (4900, "USD", "ETH", "0.01633334"),     # 18 decimals shown as 8
    (4900, "USD", "SOL", "0.326666667"),    # 9 decimals
    (100, "USD", "TRX", "4.000000"),
    (100, "USD", "POL", "2.00000000"),
    (60000, "USD", "BNB", "1.00000000"),
    (1000, "EUR", "USDT", "10.800000"),
    (1000, "GBP", "USDC", "12.700000"),
    (12900, "JPY", "USDT", "86.430000"),    # yen have no minor unit
    (1000, "CHF", "USDT", "10.000000"),     # unknown rate: 1
    (1, "USD", "ETH", "0.00000334"),
    (123456789012345, "USD", "BTC", "20576131.50205750"),
])
def test_asset_amounts_are_exact(cents, currency, asset, expected):
    assert asset_amount(cents, currency, asset) == expected


def test_asset_share_rounds_down_and_is_exact_when_whole():
    assert chains.asset_share("0.00081667", 2450, 4900, "BTC") == "0.00040833"
    assert chains.asset_share("0.00081667", 4900, 4900, "BTC") == "0.00081667"
    assert chains.asset_share("49.000000", 9800, 4900, "USDT") == "98.000000"


# --- the ledger -------------------------------------------------------------------------

@pytest.fixture
def ledger(tmp_path, clock):
    clock.set(datetime(2026, 5, 26, 7, 0, 0, tzinfo=UTC))
    db = connect(tmp_path / "sandbox.db")
    migrate(db)
    yield SandboxLedger(db, payout_confirm_seconds=5, ipn_secret="s3cret")
    db.close()


def open_invoice(provider, reference="ord_1", **overrides):
    params = {"reference": reference, "amount_cents": 4900, "currency": "USD",
              "chain": "tron", "asset": "USDT", "ttl_minutes": 60,
              "callback_url": "http://127.0.0.1:9/ipn"}
    return provider.open_invoice(**{**params, **overrides})


def send_payout(provider, reference="po_1", **overrides):
    params = {"reference": reference, "chain": "ethereum", "asset": "USDC",
              "amount_cents": 2500, "currency": "USD", "address": EVM_EXAMPLE, "memo": None}
    return provider.send_payout(**{**params, **overrides})


def test_invoice_opens_pending_and_references_are_idempotent(ledger):
    invoice = open_invoice(ledger)
    assert invoice.id.startswith("inv_") and invoice.reference == "ord_1"
    assert (invoice.status, invoice.paid_cents, invoice.asset_paid, invoice.tx_hash) == \
        ("pending", 0, "0.000000", None)
    assert invoice.asset_amount == "49.000000"
    assert validate_address("tron", invoice.address) is None
    assert invoice.expires_at == "2026-05-26T08:00:00Z"
    assert open_invoice(ledger, amount_cents=1) == invoice  # the first one, unchanged
    assert ledger.get_invoice(invoice.id) == invoice
    assert ledger.db.execute("SELECT count(*) FROM sandbox_invoices").fetchone()[0] == 1
    assert open_invoice(ledger, "ord_2").address != invoice.address


def test_unpaid_invoice_expires_when_read_and_stays_expired(ledger, clock):
    invoice = open_invoice(ledger, ttl_minutes=1)
    clock.advance(59)
    assert ledger.get_invoice(invoice.id).status == "pending"
    clock.advance(1)
    assert ledger.get_invoice(invoice.id).status == "expired"
    assert ledger.db.execute("SELECT status FROM sandbox_invoices").fetchone()[0] == "expired"
    late = ledger.pay(invoice.id, 4900)  # a late payment counts; the invoice stays expired
    assert (late.status, late.paid_cents, late.asset_paid) == ("expired", 4900, "49.000000")
    assert late.tx_hash


def test_partial_then_full_payment(ledger):
    invoice = open_invoice(ledger)
    part = ledger.pay(invoice.id, 2000)
    assert (part.status, part.paid_cents, part.asset_paid) == ("pending", 2000, "20.000000")
    assert part.tx_hash
    full = ledger.pay(invoice.id, 2900)
    assert (full.status, full.paid_cents, full.asset_paid) == ("paid", 4900, "49.000000")
    assert full.tx_hash != part.tx_hash
    assert ledger.get_invoice(invoice.id) == full


def test_partial_payment_in_btc_is_exact(ledger):
    invoice = open_invoice(ledger, chain="bitcoin", asset="BTC")
    assert invoice.asset_amount == "0.00081667"
    assert ledger.pay(invoice.id, 2450).asset_paid == "0.00040833"
    assert ledger.pay(invoice.id, 2450).asset_paid == "0.00081667"


def test_overpayment_and_paid_invoices_never_expire(ledger, clock):
    invoice = open_invoice(ledger)
    paid = ledger.pay(invoice.id, 6000)
    assert (paid.status, paid.paid_cents, paid.asset_paid) == ("paid", 6000, "60.000000")
    clock.advance(7200)
    assert ledger.get_invoice(invoice.id).status == "paid"
    with pytest.raises(ValueError, match="paid"):
        ledger.expire(invoice.id)


def test_expire_a_partly_paid_invoice(ledger, clock):
    invoice = open_invoice(ledger)
    ledger.pay(invoice.id, 100)
    clock.advance(30)
    expired = ledger.expire(invoice.id)
    assert (expired.status, expired.paid_cents, expired.expires_at) == \
        ("expired", 100, "2026-05-26T07:00:30Z")
    assert ledger.expire(invoice.id) == expired
    late = ledger.pay(invoice.id, 4800)
    assert (late.status, late.paid_cents) == ("expired", 4900)
    assert ledger.expire(invoice.id) == late  # an expired invoice stays expired


@pytest.mark.parametrize("overrides,message", [
    ({"chain": "bitcoin", "asset": "USDT"}, "not supported"),
    ({"amount_cents": 0}, "amount_cents"),
    ({"amount_cents": True}, "amount_cents"),
    ({"currency": "usd"}, "currency"),
    ({"ttl_minutes": 0}, "ttl_minutes"),
    ({"reference": ""}, "reference"),
])
def test_invalid_invoices_are_refused(ledger, overrides, message):
    with pytest.raises(Refused, match=message):
        open_invoice(ledger, **overrides)


def test_unknown_ids_are_provider_errors(ledger):
    for read in (ledger.get_invoice, ledger.get_payout, ledger.get_refund):
        with pytest.raises(UnknownObject):
            read("nope")
    with pytest.raises(ProviderError):
        ledger.pay("inv_nope", 100)
    with pytest.raises(ValueError):
        ledger.pay(open_invoice(ledger).id, 0)


def test_payout_moves_one_step_per_read(ledger, clock):
    payout = send_payout(ledger)
    assert payout.id.startswith("bpo_")
    assert (payout.status, payout.tx_hash, payout.broadcast_at) == ("queued", None, None)
    assert send_payout(ledger, amount_cents=1) == payout
    broadcast = ledger.get_payout(payout.id)
    assert broadcast.status == "broadcast" and broadcast.tx_hash.startswith("0x")
    assert broadcast.broadcast_at == "2026-05-26T07:00:00Z"
    clock.advance(4)
    assert ledger.get_payout(payout.id) == broadcast
    clock.advance(1)
    confirmed = ledger.get_payout(payout.id)
    assert (confirmed.status, confirmed.confirmed_at, confirmed.tx_hash) == \
        ("confirmed", "2026-05-26T07:00:05Z", broadcast.tx_hash)
    with pytest.raises(ValueError, match="confirmed"):
        ledger.fail_payout(payout.id, "too late")


def test_fail_payout(ledger):
    payout = send_payout(ledger)
    failed = ledger.fail_payout(payout.id, "address blacklisted")
    assert (failed.status, failed.failure_reason) == ("failed", "address blacklisted")
    assert ledger.get_payout(payout.id) == failed


@pytest.mark.parametrize("overrides,message", [
    ({"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}, "EIP-55"),
    ({"chain": "tron", "asset": "USDT", "address": EVM_EXAMPLE}, "tron address"),
    ({"memo": "12345"}, "memo"),
    ({"asset": "BTC"}, "not supported"),
    ({"amount_cents": -5}, "amount_cents"),
])
def test_invalid_payouts_are_refused(ledger, overrides, message):
    with pytest.raises(Refused, match=message):
        send_payout(ledger, **overrides)


def test_refund_succeeds_on_the_next_read(ledger):
    invoice = open_invoice(ledger)
    ledger.pay(invoice.id, 4900)
    refund = ledger.send_refund(reference="rf_1", invoice_id=invoice.id, amount_cents=1900,
                                currency="USD")
    assert refund.id.startswith("brf_")
    assert (refund.status, refund.destination_tx) == ("processing", None)
    assert ledger.send_refund(reference="rf_1", invoice_id=invoice.id, amount_cents=1,
                              currency="USD") == refund
    done = ledger.get_refund(refund.id)
    assert done.status == "succeeded" and len(done.destination_tx) == 64
    with pytest.raises(Refused, match="3000"):
        ledger.send_refund(reference="rf_2", invoice_id=invoice.id, amount_cents=3001,
                           currency="USD")
    ledger.send_refund(reference="rf_3", invoice_id=invoice.id, amount_cents=3000,
                       currency="USD")


@pytest.mark.parametrize("paid,overrides,message", [
    (0, {}, "more than the 0"),
    (4900, {"currency": "EUR"}, "in USD"),
    (4900, {"invoice_id": "inv_nope"}, "no invoice"),
])
def test_invalid_refunds_are_refused(ledger, paid, overrides, message):
    invoice = open_invoice(ledger)
    if paid:
        ledger.pay(invoice.id, paid)
    params = {"reference": "rf_1", "invoice_id": invoice.id, "amount_cents": 100,
              "currency": "USD"}
    with pytest.raises(Refused, match=message):
        ledger.send_refund(**{**params, **overrides})


def test_in_process_provider_accepts_no_callbacks(ledger):
    provider = SandboxProvider(ledger.db, payout_confirm_seconds=1)
    with pytest.raises(InvalidCallback):
        provider.verify_callback(b"{}", {})


def test_ledger_notification_is_signed_for_the_client(ledger):
    invoice = ledger.pay(open_invoice(ledger).id, 4900)
    url, body, headers = ledger.notification(invoice.id)
    assert url == "http://127.0.0.1:9/ipn"
    client = BlockPNClient("http://127.0.0.1:9", "key", "s3cret")
    assert client.verify_callback(body, headers) == invoice
    assert ledger.notification(open_invoice(ledger, "ord_2", callback_url="").id) is None


# --- the client's callback verification --------------------------------------------------

INVOICE = Invoice(id="inv_1", reference="ord_1", chain="tron", asset="USDT", address="T",
                  amount_cents=100, currency="USD", asset_amount="1.000000", paid_cents=100,
                  asset_paid="1.000000", tx_hash="ab", status="paid",
                  expires_at="2026-05-26T08:00:00Z")


def signed(body: bytes, secret: str = "s3cret", at: int | None = None) -> dict:
    return {SIGNATURE_HEADER: sign_callback(secret, body, int(time.time()) if at is None
                                            else at)}


def test_verify_callback_accepts_a_good_signature_in_any_header_case():
    client = BlockPNClient("http://127.0.0.1:9", "key", "s3cret")
    body = callback_body(INVOICE)
    assert client.verify_callback(body, signed(body)) == INVOICE
    lower = {SIGNATURE_HEADER.lower(): signed(body)[SIGNATURE_HEADER]}
    assert client.verify_callback(body, lower) == INVOICE


@pytest.mark.parametrize("case", ["other secret", "tampered body", "old", "future", "missing",
                                  "garbled", "wrong type", "not an invoice", "no secret",
                                  "non-ascii"])
def test_verify_callback_refuses(case):
    client = BlockPNClient("http://127.0.0.1:9", "key", "" if case == "no secret" else "s3cret")
    body = callback_body(INVOICE)
    headers = signed(body)
    if case == "other secret":
        headers = signed(body, secret="other")
    elif case == "tampered body":
        body = body.replace(b'"paid_cents": 100', b'"paid_cents": 999')
    elif case in ("old", "future"):
        headers = signed(body, at=int(time.time()) + (-301 if case == "old" else 301))
    elif case == "missing":
        headers = {}
    elif case == "garbled":
        headers = {SIGNATURE_HEADER: "v1=abc"}
    elif case == "non-ascii":
        headers = {SIGNATURE_HEADER: f"t={int(time.time())},v1=é"}
    elif case in ("wrong type", "not an invoice"):
        payload = {"type": "payout.updated", "invoice": json.loads(body)["invoice"]} \
            if case == "wrong type" else {"type": "invoice.updated", "invoice": {"id": 1}}
        body = json.dumps(payload).encode()
        headers = signed(body)
    with pytest.raises(InvalidCallback):
        client.verify_callback(body, headers)


# --- end to end: the client against a real `sellix-lite blockpn-sim` ----------------------

API_KEY, IPN_SECRET = "e2e-key", "e2e-secret"


class Sim:
    """A `sellix-lite blockpn-sim` subprocess on a free loopback port."""

    def __init__(self, root, *args: str, config: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"sim-{self.port}.log"
        command = [sys.executable, "-m", "sellix_lite"]
        if config is not None:
            (root / "config.toml").write_text(config)
            command += ["--config", str(root / "config.toml")]
        command += ["blockpn-sim", "--port", str(self.port), *args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=root, env=child_env(),
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for_health(self.url, self.process, output=self.output)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def post(self, path: str, **body) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=30)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    process = Sim(root, "--api-key", API_KEY, "--ipn-secret", IPN_SECRET,
                  "--payout-confirm-seconds", "1", "--data", str(root / "data" / "sim.db"))
    yield process
    assert process.stop() == 0


@pytest.fixture
def client(sim) -> BlockPNClient:
    sim.post("/sim/faults", error_rate=0, delay_seconds=0, drop_callbacks=False)
    return BlockPNClient(sim.url, API_KEY, IPN_SECRET, timeout=10)


class IpnReceiver:
    """A loopback HTTP server that checks each callback with the client, like the shop."""

    def __init__(self, client: BlockPNClient):
        self.results: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    receiver.results.append(client.verify_callback(body, self.headers))
                    self.send_response(200)
                except InvalidCallback as exc:
                    receiver.results.append(exc)
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ipn/blockpn"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver(client):
    receiver = IpnReceiver(client)
    yield receiver
    receiver.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{time.monotonic_ns()}"


def test_sim_logs_its_url_and_answers_health(sim):
    assert f"blockpn-sim serving on {sim.url}" in sim.output()
    assert requests.get(sim.url + "/healthz", timeout=5).json() == {"status": "ok"}


def test_open_and_read_an_invoice(client):
    reference = unique("ord")
    invoice = open_invoice(client, reference, chain="bitcoin", asset="BTC", callback_url="")
    assert invoice.status == "pending" and invoice.asset_amount == "0.00081667"
    assert validate_address("bitcoin", invoice.address) is None
    assert open_invoice(client, reference) == invoice
    assert client.get_invoice(invoice.id) == invoice


def test_pay_in_part_then_in_full_with_signed_callbacks(sim, client, receiver):
    invoice = open_invoice(client, unique("ord"), callback_url=receiver.url)
    answer = sim.post(f"/sim/invoices/{invoice.id}/pay", amount_cents=900).json()
    assert answer["invoice"]["status"] == "pending"
    assert answer["callback"] == {"url": receiver.url, "delivered": True,
                                  "response_code": 200, "error": None}
    answer = sim.post(f"/sim/invoices/{invoice.id}/pay").json()  # the rest
    assert [r.paid_cents for r in receiver.results] == [900, 4900]
    paid = receiver.results[-1]
    assert paid.status == "paid" and paid.asset_paid == "49.000000"
    assert client.get_invoice(invoice.id) == paid
    assert sim.post(f"/sim/invoices/{invoice.id}/pay").status_code == 422  # nothing due
    assert sim.post(f"/sim/invoices/{invoice.id}/pay", amount_cents=1,
                    notify=False).json()["callback"] is None
    assert len(receiver.results) == 2


def test_expire_with_callback_and_dropped_callbacks(sim, client, receiver):
    invoice = open_invoice(client, unique("ord"), callback_url=receiver.url)
    assert sim.post("/sim/faults", drop_callbacks=True).json()["drop_callbacks"] is True
    dropped = sim.post(f"/sim/invoices/{invoice.id}/pay", amount_cents=100).json()
    assert dropped["callback"]["delivered"] is False and receiver.results == []
    sim.post("/sim/faults", drop_callbacks=False)
    expired = sim.post(f"/sim/invoices/{invoice.id}/expire").json()
    assert expired["invoice"]["status"] == "expired"
    assert [r.status for r in receiver.results] == ["expired"]
    late = sim.post(f"/sim/invoices/{invoice.id}/pay").json()  # the rest, paid late
    assert (late["invoice"]["status"], late["invoice"]["paid_cents"]) == ("expired", 4900)
    assert [r.status for r in receiver.results] == ["expired", "expired"]
    assert receiver.results[-1].paid_cents == 4900
    listed = requests.get(sim.url + "/sim/invoices", timeout=5).json()["data"]
    assert invoice.id in [item["id"] for item in listed]


def test_payout_progression_and_failure(sim, client):
    payout = send_payout(client, unique("po"), chain="solana", asset="SOL",
                         address="11111111111111111111111111111111")
    assert payout.status == "queued"
    assert client.get_payout(payout.id).status == "broadcast"
    deadline = time.monotonic() + 10
    while client.get_payout(payout.id).status != "confirmed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.get_payout(payout.id).confirmed_at
    other = send_payout(client, unique("po"))
    failed = sim.post(f"/sim/payouts/{other.id}/fail", reason="dust").json()["payout"]
    assert (failed["status"], failed["failure_reason"]) == ("failed", "dust")
    assert client.get_payout(other.id).status == "failed"
    with pytest.raises(ProviderError, match="422.*memo"):
        send_payout(client, unique("po"), memo="1")


def test_refund(sim, client):
    invoice = open_invoice(client, unique("ord"), callback_url="")
    sim.post(f"/sim/invoices/{invoice.id}/pay")
    reference = unique("rf")
    refund = client.send_refund(reference=reference, invoice_id=invoice.id, amount_cents=4900,
                                currency="USD")
    assert refund.status == "processing"
    assert client.send_refund(reference=reference, invoice_id=invoice.id, amount_cents=4900,
                              currency="USD") == refund
    assert client.get_refund(refund.id).status == "succeeded"


def test_wire_errors_are_provider_errors(sim, client):
    with pytest.raises(ProviderError, match="401"):
        BlockPNClient(sim.url, "wrong", IPN_SECRET).get_invoice("inv_1")
    with pytest.raises(ProviderError, match="404"):
        client.get_invoice("inv_unknown")
    with pytest.raises(ProviderError, match="422"):
        open_invoice(client, unique("ord"), chain="solana", asset="TRX")
    with pytest.raises(ProviderError, match="unreachable|could not be reached"):
        BlockPNClient(f"http://127.0.0.1:{free_port()}", API_KEY, IPN_SECRET).get_invoice("x")
    answer = requests.post(sim.url + "/v1/invoices", data="[1]",
                           headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request"
    mismatch = requests.post(sim.url + "/v1/refunds", json={
        "reference": "a", "invoice_id": "b", "amount_cents": 1, "currency": "USD"},
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "c"}, timeout=5)
    assert mismatch.status_code == 422


def test_faults(sim, client):
    assert sim.post("/sim/faults", error_rate=1).json()["error_rate"] == 1
    with pytest.raises(ProviderError, match="500"):
        client.get_invoice("inv_1")
    sim.post("/sim/faults", error_rate=0, delay_seconds=1)
    slow = BlockPNClient(sim.url, API_KEY, IPN_SECRET, timeout=0.3)
    with pytest.raises(ProviderError, match="timed out"):
        slow.get_invoice("inv_1")
    assert sim.post("/sim/faults", error_rate=2).status_code == 422
    assert sim.post("/sim/faults", drop_callbacks="yes").status_code == 422


def test_defaults_come_from_config_then_dev_values(tmp_path):
    configured = Sim(tmp_path, config='[blockpn]\napi_key = "from-config"\n')
    try:
        invoice = open_invoice(BlockPNClient(configured.url, "from-config", "x"), unique("o"))
        assert invoice.status == "pending"
    finally:
        assert configured.stop(signal.SIGINT) == 0
    plain = Sim(tmp_path)
    try:
        BlockPNClient(plain.url, "sim-api-key", "sim-ipn-secret").get_payout(
            send_payout(BlockPNClient(plain.url, "sim-api-key", "x"), unique("po")).id)
    finally:
        assert plain.stop() == 0
    assert "blockpn-sim stopped" in plain.output()


# --- diagnostics: a failed checkout says what BlockPN did ------------------------------------

@pytest.fixture(scope="module")
def diagnosed_sim(tmp_path_factory):
    """A simulator of its own: the tests below turn its fault switch."""
    process = Simulator(tmp_path_factory.mktemp("diagnosed-sim"))
    yield process
    process.stop()


def failed_checkout(make_server, base_url: str, api_key: str = SIM_API_KEY) -> tuple:
    """A live checkout on a shop whose BlockPN is at `base_url`: its 502 problem, and the
    WARNING line the shop logged about it."""
    shop = make_server(f'[blockpn]\nbase_url = "{base_url}"\napi_key = "{api_key}"\n'
                       f'ipn_secret = "{SIM_IPN_SECRET}"\n')
    client = shop.client(shop.mint(mode="live", name="live"))
    product, _ = key_product(client, 1)
    response = client.post("/v1/orders", json={"product_id": product["id"],
                                               "customer_email": "buyer@example.com"})
    problem = assert_problem(response, 502, "server_error")
    (order_id,) = [row[0] for row in shop.query("SELECT id FROM orders")]
    log = shop.logged(f"order {order_id} was not created")
    (line,) = [line for line in log.splitlines() if f"order {order_id}" in line]
    assert " WARNING " in line
    assert json_body(client.get(f"/v1/products/{product['id']}"))["stock"] == 1
    return problem, line


def test_a_refused_api_key_says_so(make_server, diagnosed_sim):
    problem, line = failed_checkout(make_server, diagnosed_sim.url, api_key="wrong-key")
    assert problem["detail"].startswith(
        "BlockPN rejected the shop's API key — check [blockpn] api_key")
    assert "could not be reached" not in problem["detail"]
    assert "HTTP 401: missing or wrong API key" in line
    assert "rejected the shop's API key — check [blockpn] api_key" in line


def test_a_refused_request_gives_the_providers_reason(make_server, diagnosed_sim):
    reason = "amounts below 5.00 USD are not accepted"
    diagnosed_sim.post("/sim/faults", {"refuse": reason})
    try:
        problem, line = failed_checkout(make_server, diagnosed_sim.url)
    finally:
        diagnosed_sim.post("/sim/faults", {"refuse": ""})
    assert problem["detail"].startswith(f"BlockPN refused the request: {reason}")
    assert f"HTTP 422: {reason}" in line


def test_an_unreachable_provider_says_so(make_server):
    problem, line = failed_checkout(make_server, f"http://127.0.0.1:{free_port()}")
    assert problem["detail"].startswith("BlockPN could not be reached")
    assert "BlockPN could not be reached" in line and "connection refused" in line


def test_a_failing_provider_says_so_and_to_try_again(make_server, diagnosed_sim):
    diagnosed_sim.post("/sim/faults", {"error_rate": 1})
    try:
        problem, line = failed_checkout(make_server, diagnosed_sim.url)
    finally:
        diagnosed_sim.post("/sim/faults", {"error_rate": 0})
    assert problem["detail"] == ("BlockPN failed to handle the request; the order was not "
                                 "created, try again shortly")
    assert "HTTP 500: failure injected by the fault switch" in line


def test_a_buyer_sees_an_apology_not_the_merchants_diagnosis(make_server, diagnosed_sim):
    shop = make_server(f'[blockpn]\nbase_url = "{diagnosed_sim.url}"\napi_key = "wrong-key"\n'
                       f'ipn_secret = "{SIM_IPN_SECRET}"\n')
    product, _ = key_product(shop.client(shop.mint(mode="live", name="live")), 1)
    session = requests.Session()
    page = session.get(f"{shop.url}/product/{product['slug']}", timeout=30)
    token = re.search(r'name="csrf_token"\s+value="([^"]+)"', page.text).group(1)
    response = session.post(f"{shop.url}/product/{product['slug']}/checkout", timeout=30,
                            data={"csrf_token": token, "email": "buyer@example.com"},
                            allow_redirects=False)
    assert response.status_code == 502
    assert "start the payment just now" in response.text
    assert "api_key" not in response.text and "rejected" not in response.text
    assert "rejected the shop's API key" in shop.logged("was not created")


def test_a_job_that_meets_a_failing_provider_says_what_happened(make_server, diagnosed_sim):
    shop = make_server(f'[blockpn]\nbase_url = "{diagnosed_sim.url}"\napi_key = "{SIM_API_KEY}"\n'
                       f'ipn_secret = "{SIM_IPN_SECRET}"\n[jobs]\npayment_poll_seconds = 1\n')
    client = shop.client(shop.mint(mode="live", name="live"))
    order = place_order(client, key_product(client, 1)[0]["id"])
    diagnosed_sim.post("/sim/faults", {"error_rate": 1})
    try:
        log = shop.logged(f"order {order['id']} is asked about again later")
    finally:
        diagnosed_sim.post("/sim/faults", {"error_rate": 0})
    line = next(line for line in log.splitlines() if "asked about again later" in line)
    assert " WARNING " in line and "BlockPN failed to handle the request" in line
    assert "HTTP 500: failure injected by the fault switch" in line


# --- the shop's IPN endpoint: a callback applies only to the live order it names ------------

@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A live-mode shop on the simulator (`shop.live`), with a test-mode client (`shop.test`)."""
    with live_mode_shop(tmp_path_factory, name="ipn-shop") as shop:
        shop.test = shop.client(shop.mint(mode="test", name="test"))
        yield shop


def reported_paid(order: dict, invoice_id: str, **changes) -> Invoice:
    """The invoice of `order` as a callback reporting it paid in full would carry it."""
    payment = order["payment"]
    return Invoice(**{
        "id": invoice_id, "reference": order["id"], "chain": payment["chain"],
        "asset": payment["asset"], "address": payment["address"],
        "amount_cents": order["total_cents"], "currency": order["currency"],
        "asset_amount": payment["asset_amount"], "paid_cents": order["total_cents"],
        "asset_paid": payment["asset_amount"], "tx_hash": "0x" + "ab" * 32, "status": "paid",
        "expires_at": payment["expires_at"], **changes})


def send_ipn(shop, invoice: Invoice) -> requests.Response:
    body = callback_body(invoice)
    signature = sign_callback(SIM_IPN_SECRET, body, int(time.time()))
    return requests.post(shop.url + "/ipn/blockpn", data=body, timeout=30, headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: signature})


def new_order(client) -> dict:
    return place_order(client, make_product(client, type="account", delivery_text="x")["id"])


def untouched(shop, client, order: dict) -> None:
    now = fetch(client, order["id"])
    assert now["status"] == "awaiting_payment" and now["paid_at"] is None
    assert now["payment"]["paid_cents"] == 0
    assert event_types(shop, order["id"]) == {"order.created": 1}


def test_a_signed_live_callback_never_completes_a_test_order(shop):
    order = new_order(shop.test)
    response = send_ipn(shop, reported_paid(order, invoice_of(shop, order["id"])))
    body = assert_problem(response, 422, "unprocessable")
    assert "no live order" in body["detail"]
    untouched(shop, shop.test, order)
    shop.logged(f"refused a BlockPN callback for invoice {invoice_of(shop, order['id'])}")


@pytest.mark.parametrize("change", ["reference", "currency", "paid_cents", "unknown"])
def test_a_callback_that_does_not_match_its_order_changes_nothing(shop, change):
    order, other = new_order(shop.live), new_order(shop.live)
    invoice_id = invoice_of(shop, order["id"])
    changes = {"reference": {"reference": other["id"]}, "currency": {"currency": "EUR"},
               "paid_cents": {"paid_cents": 2**63 - 1},
               "unknown": {"id": "inv_" + "Z" * 26}}[change]
    response = send_ipn(shop, reported_paid(order, invoice_id, **changes))
    body = assert_problem(response, 422, "unprocessable")
    assert change.split("_")[0] in body["detail"] or "no live order" in body["detail"]
    for each in (order, other):
        untouched(shop, shop.live, each)
    shop.logged("refused a BlockPN callback")

    # The genuine report still applies.
    assert send_ipn(shop, reported_paid(order, invoice_id)).status_code == 200
    assert wait_for_status(shop.live, order["id"], "completed")["payment"]["paid_cents"] == \
        order["total_cents"]


def test_a_callback_with_a_lone_surrogate_is_400(shop):
    order = new_order(shop.live)
    invoice = reported_paid(order, invoice_of(shop, order["id"]), tx_hash="0x\ud800")
    assert_problem(send_ipn(shop, invoice), 400, "invalid_request")
    untouched(shop, shop.live, order)
