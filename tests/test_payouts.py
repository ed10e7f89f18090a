"""Payouts and the balance (docs/api.md, Payouts and balance), through the real server: the balance
of each mode, payouts with their required Idempotency-Key, validation of chains, assets and
addresses, racing payouts that must never overdraw, the test helper that fails a payout,
listing and abilities, and live mode end to end against the BlockPN simulator over HTTP
(confirmation, failure at the provider, a crash while broadcast, provider faults)."""

from __future__ import annotations

import json
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
import requests

from conftest import GENEROUS_LIMITS, ULID, Server, assert_problem, mint_via_api, wait_until
from support import (
    assert_invalid,
    fetch,
    invoice_of,
    live_mode_shop,
    make_product,
    pay,
    place_order,
)

PAYOUT_ID = re.compile(rf"po_{ULID}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
PAYOUT_KEYS = {"id", "status", "chain", "asset", "amount_cents", "currency",
               "destination_address", "memo", "tx_hash", "failure_reason", "created_at",
               "broadcast_at", "confirmed_at"}
TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"            # the EIP-55 example
BITCOIN = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"        # the BIP-173 example
SOLANA = "11111111111111111111111111111111"                  # 32 zero bytes: the system program
LIVE_JOBS = "[jobs]\npayout_poll_seconds = 1\npayment_poll_seconds = 1\n"


# --- helpers ------------------------------------------------------------------------------

def new_key() -> str:
    return f"payout-{secrets.token_hex(8)}"


def payout_body(amount_cents: int, chain: str = "tron", asset: str = "USDT",
                address: str = TRON, **extra) -> dict:
    return {"chain": chain, "asset": asset, "amount_cents": amount_cents,
            "destination_address": address, **extra}


def post_payout(client, body: dict, key: str | None = None) -> requests.Response:
    return client.post("/v1/payouts", json=body, headers={"Idempotency-Key": key or new_key()})


def create_payout(client, amount_cents: int, **fields) -> dict:
    response = post_payout(client, payout_body(amount_cents, **fields))
    assert response.status_code == 201, response.text
    return response.json()


def get_payout(client, payout_id: str) -> dict:
    response = client.get(f"/v1/payouts/{payout_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_payout(client, payout_id: str, status: str, timeout: float = 20) -> dict:
    def reached():
        payout = get_payout(client, payout_id)
        assert payout["status"] in (status, "queued", "broadcast"), payout
        return payout if payout["status"] == status else None
    return wait_until(reached, timeout, what=f"payout {payout_id} {status}")


def balance(client) -> dict:
    response = client.get("/v1/balance")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"available_cents", "pending_cents", "currency"}, body
    assert body["currency"] == "USD"
    return body


def fail_helper(client, payout_id: str, body: dict | None = None) -> requests.Response:
    return client.post(f"/v1/test_helpers/payouts/{payout_id}/fail", json=body or {})


def payout_events(server: Server, payout_id: str) -> list[tuple[str, dict]]:
    """(type, data.object) of every event about the payout, in the order written."""
    rows = server.query("SELECT type, data FROM events WHERE json_extract(data, "
                        "'$.object.id') = ? ORDER BY rowid", (payout_id,))
    return [(kind, json.loads(data)["object"]) for kind, data in rows]


def payout_count(server: Server, mode: str = "test") -> int:
    (count,), = server.query("SELECT count(*) FROM payouts WHERE mode = ?", (mode,))
    return count


# A new account product (10000 USD unless told), whose orders are money to pay out.
account_product = partial(make_product, type="account", delivery_text="x", price_cents=10000)


def paid_order(client, product_id: str, qty: int = 1) -> dict:
    """A test-mode order paid in full through the sandbox test helper."""
    paid = pay(client, place_order(client, product_id, qty)["id"])
    assert paid["paid_at"] and paid["status"] in ("paid", "delivering", "completed"), paid
    return paid


def fund(client, cents: int) -> None:
    """Raise the test balance by `cents` with one paid order."""
    paid_order(client, account_product(client, price_cents=cents)["id"])


def provider_id_of(server: Server, payout_id: str) -> str | None:
    (provider_id,), = server.query("SELECT provider_payout_id FROM payouts WHERE id = ?",
                                   (payout_id,))
    return provider_id


def assert_lifecycle(server: Server, payout: dict, final: str) -> None:
    """Its events are queued, broadcast (if it got that far) and `final`, once each, in
    order, each carrying the payout as it was then."""
    events = payout_events(server, payout["id"])
    kinds = [kind for kind, _ in events]
    assert kinds in ([f"payout.{s}" for s in ("queued", "broadcast", final)],
                     [f"payout.{s}" for s in ("queued", final)]), kinds
    for kind, obj in events:
        assert obj["id"] == payout["id"]
        assert obj["status"] == kind.removeprefix("payout.")
        assert obj["amount_cents"] == payout["amount_cents"]
    assert events[-1][1] == payout


# --- 1. the balance -----------------------------------------------------------------------

def test_balance_follows_paid_orders_and_refunds_per_mode(make_server):
    shop = make_server()
    tester, live = shop.client(shop.mint()), shop.client(shop.mint(mode="live", name="live"))
    empty = {"available_cents": 0, "pending_cents": 0, "currency": "USD"}
    assert balance(tester) == empty and balance(live) == empty

    product = account_product(tester)
    first = paid_order(tester, product["id"])
    second = paid_order(tester, product["id"], qty=2)
    place_order(tester, product["id"], qty=5)  # never paid: not money
    assert balance(tester) == {**empty, "available_cents": 30000}
    assert balance(live) == empty

    # A refund takes its amount out at once; while processing it is pending.
    response = tester.post(f"/v1/orders/{first['id']}/refund", json={"amount_cents": 2500},
                           headers={"Idempotency-Key": "refund-first"})
    assert response.status_code == 200, response.text
    now = balance(tester)
    assert now["available_cents"] == 27500
    assert now["pending_cents"] in (0, 2500)
    wait_until(lambda: balance(tester)["pending_cents"] == 0, what="the refund settled")
    assert balance(tester) == {**empty, "available_cents": 27500}
    # Its replay refunds nothing more; a refund without a key is refused.
    again = tester.post(f"/v1/orders/{first['id']}/refund", json={"amount_cents": 2500},
                        headers={"Idempotency-Key": "refund-first"})
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert_problem(tester.post(f"/v1/orders/{second['id']}/refund", json={}), 400,
                   "invalid_request")
    response = tester.post(f"/v1/orders/{second['id']}/refund", json={},
                           headers={"Idempotency-Key": "refund-second"})
    assert response.status_code == 200, response.text
    assert response.json()["amount_cents"] == 20000
    assert balance(tester)["available_cents"] == 7500
    wait_until(lambda: balance(tester)["pending_cents"] == 0, what="the refund settled")
    assert balance(tester) == {**empty, "available_cents": 7500}
    assert balance(live) == empty


# --- 2. a payout from queued to confirmed -------------------------------------------------

def test_payout_is_idempotent_and_reaches_confirmed(server, api):
    fund(api, 10000)
    before = balance(api)
    count = payout_count(server)
    body = payout_body(4321)

    missing = api.post("/v1/payouts", json=body)
    problem = assert_problem(missing, 400, "invalid_request")
    assert "Idempotency-Key" in problem["errors"], problem
    assert payout_count(server) == count

    key = new_key()
    response = post_payout(api, body, key)
    assert response.status_code == 201, response.text
    payout = response.json()
    assert PAYOUT_KEYS <= set(payout), payout
    assert PAYOUT_ID.fullmatch(payout["id"])
    assert payout.get("mode", "test") == "test"
    assert payout == {**payout, "status": "queued", "chain": "tron", "asset": "USDT",
                      "amount_cents": 4321, "currency": "USD", "destination_address": TRON,
                      "memo": None, "tx_hash": None, "failure_reason": None,
                      "broadcast_at": None, "confirmed_at": None}
    assert TIMESTAMP.fullmatch(payout["created_at"])
    now = balance(api)
    assert now["available_cents"] == before["available_cents"] - 4321
    assert now["pending_cents"] >= 4321

    replay = post_payout(api, body, key)
    assert replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == response.content
    assert_problem(post_payout(api, payout_body(1234), key), 409, "conflict")
    assert payout_count(server) == count + 1
    assert balance(api)["available_cents"] == before["available_cents"] - 4321

    done = wait_for_payout(api, payout["id"], "confirmed")
    assert done["tx_hash"] and TIMESTAMP.fullmatch(done["broadcast_at"])
    assert TIMESTAMP.fullmatch(done["confirmed_at"])
    assert payout["created_at"] <= done["broadcast_at"] <= done["confirmed_at"]
    assert done["failure_reason"] is None
    assert {k: v for k, v in done.items() if k not in (
        "status", "tx_hash", "broadcast_at", "confirmed_at")} == {
        k: v for k, v in payout.items() if k not in (
            "status", "tx_hash", "broadcast_at", "confirmed_at")}

    events = payout_events(server, payout["id"])
    assert [kind for kind, _ in events] == ["payout.queued", "payout.broadcast",
                                            "payout.confirmed"]
    (_, queued), (_, broadcast), (_, confirmed) = events
    assert queued == payout
    assert broadcast["status"] == "broadcast" and broadcast["confirmed_at"] is None
    assert broadcast["tx_hash"] == done["tx_hash"]
    assert broadcast["broadcast_at"] == done["broadcast_at"]
    assert confirmed == done
    # The events API serves the same events.
    listed = api.get("/v1/events", params={"type": "payout.confirmed", "limit": 100})
    assert listed.status_code == 200, listed.text
    assert [e["data"]["object"] for e in listed.json()["data"]
            if e["data"]["object"]["id"] == payout["id"]] == [done]

    wait_until(lambda: balance(api)["pending_cents"] == 0, what="nothing pending")
    assert balance(api)["available_cents"] == before["available_cents"] - 4321


# --- 3. validation ------------------------------------------------------------------------

def test_payout_validation(server, api):
    fund(api, 10000)
    count = payout_count(server)
    available = balance(api)["available_cents"]

    missing = api.post("/v1/payouts", json={}, headers={"Idempotency-Key": new_key()})
    problem = assert_problem(missing, 400, "invalid_request")
    assert {"chain", "asset", "amount_cents", "destination_address"} <= set(problem["errors"])
    partial = api.post("/v1/payouts", json={"chain": "tron", "asset": "USDT"},
                       headers={"Idempotency-Key": new_key()})
    problem = assert_problem(partial, 400, "invalid_request")
    assert {"amount_cents", "destination_address"} <= set(problem["errors"])
    assert "chain" not in problem["errors"] and "asset" not in problem["errors"]

    assert_invalid(post_payout(api, payout_body(100, chain="dogecoin")), "chain")
    assert_invalid(post_payout(api, payout_body(100, chain="tron", asset="BTC")), "asset")
    assert_invalid(post_payout(api, payout_body(100, chain="bitcoin", asset="USDT",
                                                address=BITCOIN)), "asset")
    bad_addresses = [
        ("tron", "USDT", TRON[:-1] + ("u" if TRON[-1] != "u" else "v")),  # checksum broken
        ("tron", "USDT", EVM),
        ("ethereum", "USDC", "0x" + "ab" * 19 + "a"),                    # 39 hex digits
        ("ethereum", "USDC", EVM[:2] + EVM[2:4].swapcase() + EVM[4:]),   # EIP-55 broken
        ("polygon", "USDT", "0x" + "g" * 40),
        ("bitcoin", "BTC", BITCOIN[:-1] + "5"),                          # bech32 checksum
        ("bitcoin", "BTC", TRON),
        ("solana", "USDC", "1" * 31),                                    # 31 bytes
        ("solana", "SOL", "0OIl" * 8),                                   # not base58
    ]
    for chain, asset, address in bad_addresses:
        response = post_payout(api, payout_body(100, chain=chain, asset=asset,
                                                address=address))
        assert_invalid(response, "destination_address")
    assert_invalid(post_payout(api, payout_body(100, memo="123456")), "memo")
    for amount in (0, -5, "100", 1.5, True):
        assert_invalid(post_payout(api, payout_body(amount)), "amount_cents")
    assert_invalid(post_payout(api, payout_body(available + 1)), "amount_cents")
    assert_invalid(post_payout(api, payout_body(100, surprise=1)), "surprise")
    assert payout_count(server) == count
    assert balance(api)["available_cents"] == available

    valid = [("tron", "USDT", TRON), ("tron", "TRX", TRON), ("ethereum", "USDC", EVM),
             ("ethereum", "ETH", EVM.lower()), ("base", "USDC", EVM),
             ("polygon", "POL", EVM.upper().replace("0X", "0x")), ("bsc", "BNB", EVM),
             ("bitcoin", "BTC", BITCOIN), ("bitcoin", "BTC", BITCOIN.upper()),
             ("solana", "USDC", SOLANA), ("solana", "SOL", SOLANA)]
    for chain, asset, address in valid:
        payout = create_payout(api, 1, chain=chain, asset=asset, address=address)
        assert (payout["chain"], payout["asset"]) == (chain, asset)
        assert payout["destination_address"] == address
    assert payout_count(server) == count + len(valid)
    assert balance(api)["available_cents"] == available - len(valid)


# --- 4. racing payouts --------------------------------------------------------------------

def test_racing_payouts_never_overdraw(server, test_key):
    client = server.client(test_key)
    fund(client, 20000)
    start = balance(client)["available_cents"]
    amount = start * 6 // 10 + 1
    assert amount * 2 > start
    count = payout_count(server)
    barrier = threading.Barrier(20)
    racing = threading.Event()
    seen: list[int] = []

    def attempt(index: int) -> requests.Response:
        with server.client(test_key) as own:
            barrier.wait(timeout=30)
            return post_payout(own, payout_body(amount), f"race-{index}-{secrets.token_hex(4)}")

    def watch():
        with server.client(test_key) as own:
            while racing.is_set():
                seen.append(balance(own)["available_cents"])

    racing.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(attempt, range(20)))
    finally:
        racing.clear()
        watcher.join(timeout=30)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [422] * 19, [r.text for r in responses if r.status_code != 422]
    for response in responses:
        if response.status_code == 422:
            assert_invalid(response, "amount_cents")
    assert payout_count(server) == count + 1
    after = balance(client)["available_cents"]
    assert after == start - amount >= 0
    assert seen and min(seen) >= 0

    # One request racing itself under one key runs once (docs/api.md): the others are replays
    # of it or 409 while it runs.
    key = new_key()
    barrier = threading.Barrier(10)

    def same(_):
        with server.client(test_key) as own:
            barrier.wait(timeout=30)
            return post_payout(own, payout_body(77), key)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(same, range(10)))
    created = [r for r in responses if r.status_code == 201]
    assert created and all(r.status_code in (201, 409) for r in responses), \
        [r.text for r in responses]
    assert len({r.content for r in created}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in created) == 1
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "conflict")
    assert payout_count(server) == count + 2
    assert balance(client)["available_cents"] == after - 77


# --- 5. the fail test helper --------------------------------------------------------------

def test_fail_helper_on_a_queued_payout(make_server):
    # Jobs run at start and then hourly: a payout made now stays queued.
    shop = make_server(config="[jobs]\ntick_seconds = 3600\n")
    client = shop.client(shop.mint())
    fund(client, 10000)
    payout = create_payout(client, 3000)
    assert balance(client) == {"available_cents": 7000, "pending_cents": 3000,
                               "currency": "USD"}
    assert get_payout(client, payout["id"])["status"] == "queued"

    response = fail_helper(client, payout["id"], {"reason": "address on a blocklist"})
    assert response.status_code == 200, response.text
    failed = response.json()
    assert failed["status"] == "failed" and failed["failure_reason"] == "address on a blocklist"
    assert failed["confirmed_at"] is None
    assert get_payout(client, payout["id"]) == failed
    assert balance(client) == {"available_cents": 10000, "pending_cents": 0, "currency": "USD"}
    assert [kind for kind, _ in payout_events(shop, payout["id"])] == [
        "payout.queued", "payout.failed"]
    assert_lifecycle(shop, failed, "failed")
    # A failed payout can't fail again; the money can be paid out again.
    assert_invalid(fail_helper(client, payout["id"]), "payout")
    other = create_payout(client, 10000)
    response = fail_helper(client, other["id"])  # default reason
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed" and response.json()["failure_reason"]
    assert balance(client)["available_cents"] == 10000
    third = create_payout(client, 100)
    assert_invalid(fail_helper(client, third["id"], {"reason": ""}), "reason")
    assert get_payout(client, third["id"]) == third


def test_fail_helper_on_a_broadcast_payout(make_server):
    # The sandbox takes an hour to confirm: a payout stays broadcast.
    shop = make_server(config="[sandbox]\npayout_confirm_seconds = 3600\n")
    client = shop.client(shop.mint())
    fund(client, 10000)
    payout = create_payout(client, 2500, chain="ethereum", asset="USDC", address=EVM)
    broadcast = wait_for_payout(client, payout["id"], "broadcast")
    assert broadcast["tx_hash"] and broadcast["broadcast_at"]
    assert balance(client) == {"available_cents": 7500, "pending_cents": 2500,
                               "currency": "USD"}

    response = fail_helper(client, payout["id"], {"reason": "dropped from the mempool"})
    assert response.status_code == 200, response.text
    failed = response.json()
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "dropped from the mempool"
    assert failed["confirmed_at"] is None
    assert [kind for kind, _ in payout_events(shop, payout["id"])] == [
        "payout.queued", "payout.broadcast", "payout.failed"]
    assert_lifecycle(shop, failed, "failed")
    assert balance(client) == {"available_cents": 10000, "pending_cents": 0, "currency": "USD"}
    assert get_payout(client, payout["id"]) == failed


def test_fail_helper_on_a_payout_the_sandbox_confirmed_a_moment_ago(make_server):
    # The job has read the sandbox's "confirmed" but not yet written it (a window of
    # milliseconds, widened here by confirming the sandbox's copy directly): failing it now
    # is too late, an ordinary 422, never a 500; the payout goes on to confirmed.
    shop = make_server(config="[sandbox]\npayout_confirm_seconds = 3600\n")
    client = shop.client(shop.mint())
    fund(client, 10000)
    payout = create_payout(client, 1000)
    wait_for_payout(client, payout["id"], "broadcast")
    shop.execute("UPDATE sandbox_payouts SET status = 'confirmed', confirmed_at = "
                 "strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?",
                 params=(provider_id_of(shop, payout["id"]),))
    assert_invalid(fail_helper(client, payout["id"], {"reason": "too late"}), "payout")
    done = wait_for_payout(client, payout["id"], "confirmed")
    assert done["failure_reason"] is None
    assert_lifecycle(shop, done, "confirmed")
    assert balance(client) == {"available_cents": 9000, "pending_cents": 0, "currency": "USD"}


def test_fail_helper_refuses_confirmed_payouts_and_live_keys(server, api):
    fund(api, 10000)
    payout = create_payout(api, 1500)
    done = wait_for_payout(api, payout["id"], "confirmed")
    available = balance(api)["available_cents"]
    assert_invalid(fail_helper(api, payout["id"], {"reason": "too late"}), "payout")
    assert get_payout(api, payout["id"]) == done
    assert balance(api)["available_cents"] == available
    assert [kind for kind, _ in payout_events(server, payout["id"])][-1] == "payout.confirmed"

    live = server.client(server.mint(mode="live", name="live"))
    fresh = create_payout(api, 100)
    for payout_id in (fresh["id"], payout["id"], f"po_{'0' * 26}"):
        assert_problem(fail_helper(live, payout_id), 404, "not_found")
    assert get_payout(api, fresh["id"])["status"] != "failed"
    assert_problem(fail_helper(api, f"po_{'0' * 26}"), 404, "not_found")
    reader = server.client(mint_via_api(server, "payouts:read"))
    body = assert_problem(fail_helper(reader, fresh["id"]), 403, "forbidden_scope")
    assert "payouts:write" in body["detail"]


# --- 6. listing, modes and abilities ------------------------------------------------------

def test_list_filters_pagination_modes_and_abilities(server, api):
    fund(api, 10000)
    made = [create_payout(api, 100 + i) for i in range(3)]
    response = fail_helper(api, made[1]["id"])
    assert response.status_code == 200, response.text
    for payout in (made[0], made[2]):
        wait_for_payout(api, payout["id"], "confirmed")
    wait_until(lambda: all(p["status"] in ("confirmed", "failed") for p in
                           api.get("/v1/payouts", params={"limit": 100}).json()["data"]),
               what="every payout final")

    def listing(**params) -> dict:
        response = api.get("/v1/payouts", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["object"] == "list"
        return page

    everything = listing(limit=100)
    ids = [p["id"] for p in everything["data"]]
    assert ids == sorted(ids, reverse=True)
    assert ids[:3] == [p["id"] for p in reversed(made)]
    assert everything["data"][1] == get_payout(api, made[1]["id"])
    for status in ("queued", "broadcast", "confirmed", "failed"):
        page = listing(status=status, limit=100)
        assert all(p["status"] == status for p in page["data"]), page
        assert [p["id"] for p in page["data"]] == [
            p["id"] for p in everything["data"] if p["status"] == status]
    assert made[1]["id"] in [p["id"] for p in listing(status="failed", limit=100)["data"]]
    assert made[0]["id"] in [p["id"] for p in listing(status="confirmed", limit=100)["data"]]
    assert_invalid(api.get("/v1/payouts", params={"status": "lost"}), "status")
    assert_invalid(api.get("/v1/payouts", params={"limit": 0}), "limit")

    walked, cursor = [], None
    while True:
        page = listing(limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["data"]) <= 2
        walked += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        assert cursor
    if not everything["has_more"]:
        assert walked == ids
    else:
        assert walked[:100] == ids
    confirmed_walk, cursor = [], None
    while True:
        page = listing(limit=1, status="confirmed", **({"cursor": cursor} if cursor else {}))
        confirmed_walk += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert confirmed_walk[:100] == [p["id"] for p in listing(status="confirmed",
                                                          limit=100)["data"]]

    # The other mode sees none of it.
    live = server.client(server.mint(mode="live", name="live"))
    for payout in made:
        assert_problem(live.get(f"/v1/payouts/{payout['id']}"), 404, "not_found")
    response = live.get("/v1/payouts", params={"limit": 100})
    assert response.status_code == 200
    assert not {p["id"] for p in response.json()["data"]} & set(ids)
    assert balance(live) == {"available_cents": 0, "pending_cents": 0, "currency": "USD"}
    assert_problem(api.get(f"/v1/payouts/po_{'0' * 26}"), 404, "not_found")

    # Abilities.
    reader = server.client(mint_via_api(server, "payouts:read"))
    assert reader.get(f"/v1/payouts/{made[0]['id']}").status_code == 200
    assert reader.get("/v1/payouts").status_code == 200
    assert reader.get("/v1/balance").status_code == 200
    count = payout_count(server)
    body = assert_problem(post_payout(reader, payout_body(100)), 403, "forbidden_scope")
    assert "payouts:write" in body["detail"]
    writer = server.client(mint_via_api(server, "payouts:write"))
    for path in (f"/v1/payouts/{made[0]['id']}", "/v1/payouts", "/v1/balance"):
        body = assert_problem(writer.get(path), 403, "forbidden_scope")
        assert "payouts:read" in body["detail"]
    assert post_payout(writer, payout_body(100)).status_code == 201
    other = server.client(mint_via_api(server, "orders:read", "orders:write"))
    assert_problem(other.get("/v1/balance"), 403, "forbidden_scope")
    assert_problem(post_payout(other, payout_body(100)), 403, "forbidden_scope")
    assert payout_count(server) == count + 1


# --- 7.–9. live mode against the BlockPN simulator over HTTP ------------------------------

@pytest.fixture(scope="module")
def live_shop(tmp_path_factory):
    """Live mode on the simulator (payouts confirm 2 s after they are sent); jobs poll
    payments and payouts every second."""
    with live_mode_shop(tmp_path_factory, GENEROUS_LIMITS + LIVE_JOBS, ledger=True,
                        payout_confirm_seconds=2) as shop:
        yield shop


@pytest.fixture(scope="module")
def slow_live_shop(tmp_path_factory):
    """As live_shop, but payouts take 6 s to confirm: time to act while they are broadcast."""
    with live_mode_shop(tmp_path_factory, GENEROUS_LIMITS + LIVE_JOBS, ledger=True,
                        payout_confirm_seconds=6) as shop:
        yield shop


def fund_live(shop: Server, cents: int) -> None:
    """Raise the live balance by `cents` with an order paid through the simulator."""
    client = shop.live
    before = balance(client)["available_cents"]
    order = place_order(client, account_product(client, price_cents=cents)["id"])
    assert order["mode"] == "live"
    shop.sim.post(f"/sim/invoices/{invoice_of(shop, order['id'])}/pay", {"notify": True})
    wait_until(lambda: fetch(client, order["id"])["paid_at"], what=f"live order {order['id']} paid")
    assert balance(client)["available_cents"] == before + cents


def assert_one_at_the_sim(shop: Server, payout: dict) -> dict:
    """Exactly one payout at the simulator for ours, matching it."""
    rows = shop.sim.payouts_for(payout["id"])
    assert len(rows) == 1, rows
    provider_id = provider_id_of(shop, payout["id"])
    assert provider_id == rows[0]["id"]
    row = rows[0]
    assert (row["chain"], row["asset"], row["amount_cents"], row["currency"],
            row["address"]) == (payout["chain"], payout["asset"], payout["amount_cents"],
                                payout["currency"], payout["destination_address"])
    return row


def test_live_payout_through_the_simulator(live_shop):
    shop, client = live_shop, live_shop.live
    fund_live(shop, 20000)
    tester = shop.client(shop.mint())
    assert balance(tester) == {"available_cents": 0, "pending_cents": 0, "currency": "USD"}
    before = balance(client)
    count = payout_count(shop, "live")
    assert_problem(client.post("/v1/payouts", json=payout_body(100)), 400, "invalid_request")
    key = new_key()
    response = post_payout(client, payout_body(7000, chain="solana", asset="USDC",
                                               address=SOLANA), key)
    assert response.status_code == 201, response.text
    payout = response.json()
    assert payout["status"] == "queued" and payout.get("mode", "live") == "live"
    assert balance(client)["available_cents"] == before["available_cents"] - 7000
    replay = post_payout(client, payout_body(7000, chain="solana", asset="USDC",
                                             address=SOLANA), key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == response.content
    assert_problem(tester.get(f"/v1/payouts/{payout['id']}"), 404, "not_found")
    assert_problem(fail_helper(client, payout["id"]), 404, "not_found")

    done = wait_for_payout(client, payout["id"], "confirmed")
    assert done["tx_hash"] and done["broadcast_at"] and done["confirmed_at"]
    assert_lifecycle(shop, done, "confirmed")
    row = assert_one_at_the_sim(shop, payout)
    remote = shop.sim.get(f"/v1/payouts/{row['id']}")
    assert remote.status_code == 200, remote.text
    remote = remote.json()
    assert remote["reference"] == payout["id"] and remote["status"] == "confirmed"
    assert remote["tx_hash"] == done["tx_hash"]
    wait_until(lambda: balance(client)["pending_cents"] == 0, what="nothing pending")
    assert balance(client)["available_cents"] == before["available_cents"] - 7000
    assert payout_count(shop, "live") == count + 1 and payout_count(shop, "test") == 0


def test_live_payout_failed_at_the_simulator(slow_live_shop):
    shop, client = slow_live_shop, slow_live_shop.live
    fund_live(shop, 10000)
    before = balance(client)["available_cents"]
    payout = create_payout(client, 4000, chain="bitcoin", asset="BTC", address=BITCOIN)
    wait_for_payout(client, payout["id"], "broadcast")
    provider_id = provider_id_of(shop, payout["id"])
    assert provider_id
    shop.sim.post(f"/sim/payouts/{provider_id}/fail", {"reason": "double spend"})

    failed = wait_for_payout(client, payout["id"], "failed")
    assert failed["failure_reason"] == "double spend"
    assert failed["confirmed_at"] is None
    assert [kind for kind, _ in payout_events(shop, payout["id"])] == [
        "payout.queued", "payout.broadcast", "payout.failed"]
    assert_lifecycle(shop, failed, "failed")
    assert balance(client)["available_cents"] == before
    assert_one_at_the_sim(shop, payout)


def test_live_payout_survives_a_crash_while_broadcast(slow_live_shop):
    shop, client = slow_live_shop, slow_live_shop.live
    fund_live(shop, 10000)
    before = balance(client)["available_cents"]
    payout = create_payout(client, 6000, chain="base", asset="USDC", address=EVM)
    wait_for_payout(client, payout["id"], "broadcast")
    shop.kill()
    shop.start()
    done = wait_for_payout(client, payout["id"], "confirmed", timeout=30)
    assert_lifecycle(shop, done, "confirmed")
    assert [kind for kind, _ in payout_events(shop, payout["id"])] == [
        "payout.queued", "payout.broadcast", "payout.confirmed"]
    assert_one_at_the_sim(shop, payout)
    assert balance(client)["available_cents"] == before - 6000


def test_live_payout_waits_out_provider_faults(live_shop):
    shop, client = live_shop, live_shop.live
    fund_live(shop, 10000)
    before = balance(client)["available_cents"]
    shop.sim.post("/sim/faults", {"error_rate": 1})
    try:
        payout = create_payout(client, 5000)
        checks: set[str] = set()

        def retried():
            (next_check, status, provider_id), = shop.query(
                "SELECT next_check_at, status, provider_payout_id FROM payouts WHERE id = ?",
                (payout["id"],))
            assert status == "queued" and provider_id is None
            checks.add(next_check)
            return len(checks) >= 3
        wait_until(retried, timeout=20, what="the payout retried while the provider fails")
        assert shop.process.poll() is None
        assert requests.get(shop.url + "/healthz", timeout=10).status_code == 200
        assert get_payout(client, payout["id"])["status"] == "queued"
        assert balance(client)["available_cents"] == before - 5000
        assert shop.sim.payouts_for(payout["id"]) == []
        assert [kind for kind, _ in payout_events(shop, payout["id"])] == ["payout.queued"]
    finally:
        shop.sim.post("/sim/faults", {"error_rate": 0})
    done = wait_for_payout(client, payout["id"], "confirmed")
    assert_lifecycle(shop, done, "confirmed")
    assert [kind for kind, _ in payout_events(shop, payout["id"])] == [
        "payout.queued", "payout.broadcast", "payout.confirmed"]
    assert_one_at_the_sim(shop, payout)
    assert balance(client)["available_cents"] == before - 5000
