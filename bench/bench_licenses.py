"""License checks beside the list page: public `POST /v1/licenses/validate` requests per
second, each answered with a freshly signed lease, and `GET /v1/products?limit=25` (a full
page), in alternating rounds against one real server.

    python bench/bench_licenses.py [--rounds 5] [--seconds 5]

Run alone, it prints the figures and records them under "licenses" in bench/results.json;
bench/run_all.py runs it with the others. The per-address limit of the license checks is
raised out of the way, as the keys' limits are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchServer, cpu_seconds, load, record, request  # noqa: E402

CHECKS_UNLIMITED = "license_checks_per_minute_per_ip = 100000000\n"
LIST_PAGE = "/v1/products?limit=25"
PRODUCTS = 30  # more than a page, so the list page is full


def _ok(status: int, body, expected: int = 201):
    assert status == expected, body
    return body


def seed(server: BenchServer, secret: str) -> str:
    """A full product page, and a sold key activated on one instance; the validate body."""
    port = server.port
    for index in range(PRODUCTS):
        _ok(*request("POST", port, "/v1/products", secret=secret, body={
            "name": f"Product {index}", "type": "account", "price_cents": 100,
            "currency": "USD", "delivery_text": "x"}))
    product = _ok(*request("POST", port, "/v1/products", secret=secret, body={
        "name": "Licensed", "type": "license_key", "price_cents": 100, "currency": "USD",
        "activation_limit": 3}))
    _ok(*request("POST", port, f"/v1/products/{product['id']}/keys", secret=secret,
                 body={"keys": ["BENCH-AAAA-BBBB-CCCC"]}))
    order = _ok(*request("POST", port, "/v1/orders", secret=secret, body={
        "product_id": product["id"], "customer_email": "bench@example.com"}))
    _ok(*request("POST", port, f"/v1/test_helpers/orders/{order['id']}/pay", secret=secret,
                 body={}), expected=200)
    activated = _ok(*request("POST", port, "/v1/licenses/activate", body={
        "license_key": "BENCH-AAAA-BBBB-CCCC", "instance_name": "bench",
        "fingerprint": "bench-machine"}))
    return json.dumps({"license_key": "BENCH-AAAA-BBBB-CCCC",
                       "instance_id": activated["instance"]["id"]})


def _measured(server: BenchServer, secret: str, seconds: float, **kwargs) -> dict:
    before = cpu_seconds(server.process.pid)
    figures = load(server.port, secret, seconds=seconds, **kwargs)
    figures["cpu_ms"] = 1000 * (cpu_seconds(server.process.pid) - before) / max(
        figures["requests"], 1)
    return figures


def compare(rounds: int = 5, seconds: float = 5) -> dict:
    """Alternating rounds of validate and the list page; every round's figures and the
    median of the per-round ratios."""
    server = BenchServer(CHECKS_UNLIMITED)
    server.cli("init")
    secret = server.mint()
    server.start()
    try:
        body = seed(server, secret)
        validate, listed = [], []
        for _ in range(rounds):
            # The checks send no key: the load generator's header is ignored on them.
            validate.append(_measured(server, "", seconds, paths=["/v1/licenses/validate"],
                                      method="POST", body=body))
            listed.append(_measured(server, secret, seconds, paths=[LIST_PAGE]))
    finally:
        server.stop()
    ratio = statistics.median(v["rps"] / w["rps"] for v, w in zip(validate, listed))
    return {"validate": validate, "list": listed, "ratio": ratio, "rounds": rounds,
            "seconds": seconds}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def summary(figures: dict) -> str:
    validate, listed = figures["validate"], figures["list"]
    return (f"POST /v1/licenses/validate (lease signed): {_median(validate, 'rps'):.0f} req/s, "
            f"p50 {_median(validate, 'p50_ms'):.1f} ms, p99 {_median(validate, 'p99_ms'):.1f} "
            f"ms, {_median(validate, 'cpu_ms'):.2f} ms CPU; {LIST_PAGE}: "
            f"{_median(listed, 'rps'):.0f} req/s, p50 {_median(listed, 'p50_ms'):.1f} ms; "
            f"ratio {figures['ratio']:.2f} (target ≥ 0.5), the median of "
            f"{figures['rounds']} alternating rounds of {figures['seconds']:g} s; "
            f"{sum(run['errors'] for run in validate + listed)} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    figures = compare(args.rounds, args.seconds)
    print(summary(figures))
    record("licenses", figures)


if __name__ == "__main__":
    main()
