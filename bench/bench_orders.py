"""Order benchmark: orders created, paid and delivered per second, end to end.

    python bench/bench_orders.py [--seconds 10] [--threads 8]

Each flow is POST /v1/orders → POST /v1/test_helpers/orders/{id}/pay → the order is
completed with its license key; the load runs in a second process.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchServer, call, request, run_in_threads  # noqa: E402

KEYS = 20_000


def _flows(port, secret, product_id, seconds, threads, queue):
    durations, failures = [], [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run(worker):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, count = [], 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status, order = call(conn, secret, "POST", "/v1/orders", {
                "product_id": product_id, "customer_email": f"b{worker}-{count}@example.com"})
            count += 1
            if status != 201:
                with lock:
                    failures[0] += 1
                continue
            status, paid = call(conn, secret, "POST",
                                f"/v1/test_helpers/orders/{order['id']}/pay", {})
            if status != 200 or paid["status"] != "completed" or not paid["delivery"]["keys"]:
                with lock:
                    failures[0] += 1
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            durations.extend(mine)

    run_in_threads(run, threads)
    queue.put((durations, failures[0]))


def order_flows(seconds: float, threads: int) -> dict:
    """Run the flows for `seconds`; orders per second and latency percentiles."""
    server = BenchServer()
    server.cli("init")
    secret = server.mint()
    server.start()
    try:
        _, product = request("POST", server.port, "/v1/products", secret=secret, body={
            "name": "Bench key", "type": "license_key", "price_cents": 4900, "currency": "USD"})
        for start in range(0, KEYS, 5000):
            request("POST", server.port, f"/v1/products/{product['id']}/keys", secret=secret,
                    body={"keys": [f"KEY-{n:06d}" for n in range(start, start + 5000)]})
        queue = multiprocessing.Queue()
        load = multiprocessing.Process(target=_flows, args=(
            server.port, secret, product["id"], seconds, threads, queue))
        load.start()
        durations, failures = queue.get()
        load.join()
    finally:
        server.stop()
    durations.sort()
    return {"orders": len(durations), "failures": failures, "threads": threads,
            "per_second": len(durations) / seconds,
            "p50_ms": 1000 * durations[len(durations) // 2],
            "p99_ms": 1000 * durations[int(len(durations) * 0.99)]}


def summary(figures: dict) -> str:
    return (f"checkout -> pay -> delivered: {figures['per_second']:.1f} orders/s, "
            f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"{figures['orders']} orders, {figures['failures']} failures "
            f"({figures['threads']} concurrent buyers)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    print(summary(order_flows(args.seconds, args.threads)))


if __name__ == "__main__":
    main()
