"""`sellix-lite blockpn-sim`: the BlockPN sandbox served over HTTP (docs/blockpn.md).

It speaks the wire contract of `http_client.py`, so the live client is tested end to end
and a shop can run live mode with no network. The ledger lives in a SQLite file of its own.

- `/v1/...`: the provider API, behind `Authorization: Bearer <api key>`; the fault switch
  can make these answers slow or failing.
- `/sim/...`: simulation controls for tests and people: pay or expire an invoice (then send
  the signed IPN to its callback URL), fail a payout, list invoices, set faults. They take
  no key: the simulator is a local test tool and listens on loopback by default.
"""

from __future__ import annotations

import hmac
import logging
import random
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import waitress
from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import outbound
from .db import connect
from .migrations import migrate
from .providers.http_client import to_wire
from .providers.sandbox import Refused, SandboxLedger, UnknownObject
from .server import StartupError, stop_on_sigterm

log = logging.getLogger("sellix_lite.blockpn_sim")

DEV_API_KEY = "sim-api-key"
DEV_IPN_SECRET = "sim-ipn-secret"
CALLBACK_TIMEOUT_SECONDS = 5
MAX_DELAY_SECONDS = 60
THREADS = 8  # an IPN waits on the shop, which may call back in meanwhile

STR, INT, BOOL, NUMBER, OPTIONAL_STR = (str,), (int,), (bool,), (int, float), (str, type(None))
INVOICE_FIELDS = {"reference": (STR, True), "amount_cents": (INT, True),
                  "currency": (STR, True), "chain": (STR, True), "asset": (STR, True),
                  "ttl_minutes": (INT, True), "callback_url": (STR, True)}
PAYOUT_FIELDS = {"reference": (STR, True), "chain": (STR, True), "asset": (STR, True),
                 "amount_cents": (INT, True), "currency": (STR, True),
                 "address": (STR, True), "memo": (OPTIONAL_STR, False)}
REFUND_FIELDS = {"reference": (STR, True), "invoice_id": (STR, True),
                 "amount_cents": (INT, True), "currency": (STR, True)}
READERS = {"invoices": "get_invoice", "payouts": "get_payout", "refunds": "get_refund"}


@dataclass(frozen=True)
class Faults:
    """What the fault switch makes the provider endpoints do."""

    error_rate: float = 0.0      # share of /v1 requests answered 500
    delay_seconds: float = 0.0   # sleep before answering each /v1 request
    drop_callbacks: bool = False  # send no IPN
    refuse: str = ""             # when set: /v1 requests answered 422 with this message


@dataclass
class Settings:
    """What every request of one simulator shares."""

    db_path: str
    api_key: str
    ipn_secret: str
    payout_confirm_seconds: int
    faults: Faults = field(default_factory=Faults)


class SimError(Exception):
    """An error answer: `{"error": {"type", "message"}}` with an HTTP status."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind = status, kind


v1 = Blueprint("blockpn_v1", __name__, url_prefix="/v1")
sim = Blueprint("blockpn_sim", __name__, url_prefix="/sim")


def create_simulator(db_path, *, api_key: str, ipn_secret: str,
                     payout_confirm_seconds: int) -> Flask:
    """The simulator app over the SQLite file `db_path`, created or migrated now."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    db = connect(db_path)
    try:
        migrate(db)
    finally:
        db.close()
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.extensions["blockpn_sim"] = Settings(str(db_path), api_key, ipn_secret,
                                             payout_confirm_seconds)
    app.register_blueprint(v1)
    app.register_blueprint(sim)
    app.add_url_rule("/healthz", "healthz", _healthz)
    app.register_error_handler(SimError, lambda e: _error(e.status, e.kind, str(e)))
    app.register_error_handler(UnknownObject, lambda e: _error(404, "not_found", str(e)))
    app.register_error_handler(Refused, lambda e: _error(422, "unprocessable", str(e)))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _crash)
    app.teardown_appcontext(_close_db)
    return app


def serve(*, host: str, port: int, data_path: str | None, api_key: str, ipn_secret: str,
          payout_confirm_seconds: int) -> None:
    """Serve until SIGINT or SIGTERM. Without `data_path` the ledger lives in a temporary
    folder that is removed on exit."""
    with ExitStack() as stack:
        if data_path is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="blockpn-sim-"))
            data_path = str(Path(folder) / "blockpn-sim.db")
        app = create_simulator(data_path, api_key=api_key, ipn_secret=ipn_secret,
                               payout_confirm_seconds=payout_confirm_seconds)
        try:
            server = waitress.create_server(app, host=host, port=port, threads=THREADS,
                                            ident="blockpn-sim")
        except OSError as exc:
            raise StartupError(f"can't listen on {host}:{port}: {exc.strerror}") from None
        stop_on_sigterm()
        log.info("blockpn-sim serving on http://%s:%s", host, server.effective_port)
        try:
            server.run()  # returns (or raises) on SIGINT and SIGTERM
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            server.close()
        log.info("blockpn-sim stopped")


@v1.before_request
def _guard():
    """Faults first (a failing server fails before it checks anything), then the key."""
    settings = _settings()
    if settings.faults.delay_seconds:
        time.sleep(settings.faults.delay_seconds)
    if random.random() < settings.faults.error_rate:
        raise SimError(500, "server_error", "failure injected by the fault switch")
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, f"Bearer {settings.api_key}".encode()):
        raise SimError(401, "unauthenticated", "missing or wrong API key")
    if settings.faults.refuse:
        raise SimError(422, "unprocessable", settings.faults.refuse)


@v1.post("/invoices")
def open_invoice():
    """Open an invoice (a known reference returns it)."""
    body = _body(INVOICE_FIELDS, idempotent=True)
    url = urlsplit(body["callback_url"])
    if body["callback_url"] and (url.scheme not in ("http", "https") or not url.hostname):
        raise SimError(422, "unprocessable", "callback_url must be an http(s) URL or empty")
    return jsonify(to_wire(_ledger().open_invoice(**body)))


@v1.post("/payouts")
def send_payout():
    """Queue a payout (a known reference returns it)."""
    body = {"memo": None, **_body(PAYOUT_FIELDS, idempotent=True)}
    return jsonify(to_wire(_ledger().send_payout(**body)))


@v1.post("/refunds")
def send_refund():
    """Refund part or all of an invoice (a known reference returns it)."""
    return jsonify(to_wire(_ledger().send_refund(**_body(REFUND_FIELDS, idempotent=True))))


@v1.get("/<any(invoices, payouts, refunds):kind>/<object_id>")
def read(kind, object_id):
    """An invoice, payout or refund as it is now."""
    return jsonify(to_wire(getattr(_ledger(), READERS[kind])(object_id)))


@sim.post("/invoices/<invoice_id>/pay")
def pay(invoice_id):
    """Pay the invoice (by default what is still due), then send the IPN."""
    body = _body({"amount_cents": (INT, False), "notify": (BOOL, False)})
    ledger = _ledger()
    amount = body.get("amount_cents")
    if amount is None:
        invoice = ledger.get_invoice(invoice_id)
        amount = invoice.amount_cents - invoice.paid_cents
        if amount <= 0:
            raise SimError(422, "unprocessable",
                           "the invoice is paid in full; give amount_cents to pay more")
    invoice = ledger.pay(invoice_id, amount)
    return _reported(ledger, invoice, body.get("notify", True))


@sim.post("/invoices/<invoice_id>/expire")
def expire(invoice_id):
    """Let the invoice run out now, then send the IPN."""
    body = _body({"notify": (BOOL, False)})
    ledger = _ledger()
    return _reported(ledger, ledger.expire(invoice_id), body.get("notify", True))


@sim.post("/payouts/<payout_id>/fail")
def fail_payout(payout_id):
    """Fail a payout that is not confirmed yet."""
    reason = _body({"reason": (STR, False)}).get("reason") or "rejected by the simulator"
    return jsonify({"payout": to_wire(_ledger().fail_payout(payout_id, reason))})


@sim.get("/invoices")
def list_invoices():
    """The newest 100 invoices, for people looking at the simulator."""
    return jsonify({"data": [to_wire(invoice) for invoice in _ledger().recent_invoices()]})


@sim.route("/faults", methods=["GET", "POST"])
def faults():
    """Read or change the fault switch; a POST changes only the fields it names."""
    settings = _settings()
    if request.method == "POST":
        changes = _body({"error_rate": (NUMBER, False), "delay_seconds": (NUMBER, False),
                         "drop_callbacks": (BOOL, False), "refuse": (STR, False)})
        if not 0 <= changes.get("error_rate", 0) <= 1:
            raise SimError(422, "unprocessable", "error_rate must be from 0 to 1")
        if not 0 <= changes.get("delay_seconds", 0) <= MAX_DELAY_SECONDS:
            raise SimError(422, "unprocessable",
                           f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS}")
        settings.faults = replace(settings.faults, **changes)  # one atomic swap
    return jsonify(asdict(settings.faults))


@sim.errorhandler(ValueError)
def _refused_step(exc):
    return _error(422, "unprocessable", str(exc))


def _reported(ledger: SandboxLedger, invoice, notify: bool):
    callback = _send_ipn(ledger, invoice.id) if notify else None
    return jsonify({"invoice": to_wire(invoice), "callback": callback})


def _send_ipn(ledger: SandboxLedger, invoice_id: str) -> dict | None:
    """POST the signed IPN, best effort: the outcome is reported, never raised."""
    message = ledger.notification(invoice_id)
    if message is None:
        return None
    url, body, headers = message
    if _settings().faults.drop_callbacks:
        return {"url": url, "delivered": False, "response_code": None,
                "error": "dropped by the fault switch"}
    result = outbound.post(url, body, headers, timeout=CALLBACK_TIMEOUT_SECONDS,
                           targets=None)
    return {"url": url, "delivered": result.ok, "response_code": result.status,
            "error": result.error}


def _body(fields: dict, *, idempotent: bool = False) -> dict:
    """The JSON object of the request, checked against `fields`: name → (types, required)."""
    data = request.get_json(force=True, silent=True) if request.get_data() else {}
    if not isinstance(data, dict):
        raise SimError(400, "invalid_request", "the body must be a JSON object")
    missing = [name for name, (_, required) in fields.items() if required and name not in data]
    if missing:
        raise SimError(400, "invalid_request", f"missing: {', '.join(missing)}")
    wrong = [name for name, value in data.items()
             if name not in fields or not _is(value, fields[name][0])]
    if wrong:
        raise SimError(422, "unprocessable", f"unknown or mistyped: {', '.join(wrong)}")
    key = request.headers.get("Idempotency-Key")
    if idempotent and key is not None and key != data["reference"]:
        raise SimError(422, "unprocessable", "Idempotency-Key must equal reference")
    return data


def _is(value, types: tuple) -> bool:
    if isinstance(value, bool):  # true is not a number here
        return bool in types
    return isinstance(value, types)


def _settings() -> Settings:
    return current_app.extensions["blockpn_sim"]


def _ledger() -> SandboxLedger:
    settings = _settings()
    if "sim_db" not in g:
        g.sim_db = connect(settings.db_path)
    return SandboxLedger(g.sim_db, payout_confirm_seconds=settings.payout_confirm_seconds,
                         ipn_secret=settings.ipn_secret)


def _close_db(_exc=None) -> None:
    db = g.pop("sim_db", None)
    if db is not None:
        db.close()


def _healthz():
    _ledger().db.execute("SELECT 1")
    return jsonify({"status": "ok"})


def _error(status: int, kind: str, message: str):
    response = jsonify({"error": {"type": kind, "message": message}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _http_error(exc: HTTPException):
    kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    return _error(exc.code or 500, kinds.get(exc.code, "invalid_request"), exc.description)


def _crash(exc: Exception):
    log.exception("blockpn-sim: unexpected error on %s %s", request.method, request.path)
    return _error(500, "server_error", "unexpected error in the simulator")
