"""Soak benchmark: the server's memory under minutes of mixed load.

    python bench/bench_soak.py [--minutes 10] [--threads 4]

The load runs in a second process and mixes what a shop does all day: product list pages
(six in eight requests), product creations, and orders created then paid through the test
helper, with a webhook endpoint receiving every event. The server's RSS is sampled every
10 seconds; growth is counted from the end of the first minute, once SQLite's page caches
and the interpreter's pools have filled.
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

from bench.bench_webhooks import register, start_receivers  # noqa: E402
from bench.common import BenchServer, call, free_port, request, run_in_threads  # noqa: E402

WARM_UP_SECONDS = 60
SAMPLE_SECONDS = 10


def _mixed_load(port, secret, product_id, seconds, threads, queue):
    counts = {"reads": 0, "products": 0, "orders": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def step(conn, worker, n):
        kind = n % 8
        if kind < 6:
            status, _ = call(conn, secret, "GET", "/v1/products?limit=25")
            return "reads", status == 200
        if kind == 6:
            status, _ = call(conn, secret, "POST", "/v1/products", {
                "name": f"Soak {worker}-{n}", "type": "account", "price_cents": 500,
                "currency": "USD", "delivery_text": "login: soak"})
            return "products", status == 201
        status, order = call(conn, secret, "POST", "/v1/orders", {
            "product_id": product_id, "customer_email": f"soak{worker}-{n}@example.com"})
        if status != 201:
            return "orders", False
        status, paid = call(conn, secret, "POST",
                            f"/v1/test_helpers/orders/{order['id']}/pay", {})
        return "orders", status == 200 and paid["status"] == "completed"

    def run(worker):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = worker
        while time.perf_counter() < stop_at:
            kind, ok = step(conn, worker, n)
            n += 1
            with lock:
                counts[kind] += 1
                counts["errors"] += not ok

    run_in_threads(run, threads)
    queue.put(counts)


def soak(minutes: float, threads: int) -> dict:
    """Run the mixed load; the counts, the RSS samples and the growth after warm-up."""
    server = BenchServer("[jobs]\ntick_seconds = 1\n")
    server.cli("init")
    secret = server.mint()
    server.start()
    receiver_port = free_port()
    receivers, delivered = start_receivers([receiver_port])
    try:
        register(server, secret, f"http://127.0.0.1:{receiver_port}/hook")
        _, product = request("POST", server.port, "/v1/products", secret=secret, body={
            "name": "Soak account", "type": "account", "price_cents": 900, "currency": "USD",
            "delivery_text": "login: buyer"})
        seconds = minutes * 60
        queue = multiprocessing.Queue()
        load = multiprocessing.Process(target=_mixed_load, args=(
            server.port, secret, product["id"], seconds, threads, queue))
        samples = [(0.0, server.rss_mib())]
        started = time.perf_counter()
        load.start()
        while load.is_alive() and time.perf_counter() - started < seconds + 30:
            time.sleep(SAMPLE_SECONDS)
            samples.append((time.perf_counter() - started, server.rss_mib()))
        counts = queue.get()
        load.join()
    finally:
        receivers.terminate()
        server.stop()
    after_warm_up = next(rss for at, rss in samples if at >= min(WARM_UP_SECONDS, seconds / 2))
    return {"minutes": minutes, "counts": counts, "webhooks_delivered": delivered.value,
            "samples": samples, "after_warm_up": after_warm_up, "end": samples[-1][1],
            "growth": samples[-1][1] - after_warm_up}


def summary(result: dict) -> str:
    counts = result["counts"]
    requests = counts["reads"] + counts["products"] + 2 * counts["orders"]
    return (f"mixed load for {result['minutes']:g} min: {requests} requests ({counts['reads']} "
            f"list pages, {counts['products']} products created, {counts['orders']} orders "
            f"created and paid), {counts['errors']} errors, "
            f"{result['webhooks_delivered']} webhooks delivered; RSS {result['samples'][0][1]:.1f}"
            f" MiB idle, {result['after_warm_up']:.1f} MiB after the first minute, "
            f"{result['end']:.1f} MiB at the end: growth {result['growth']:+.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    result = soak(args.minutes, args.threads)
    print(summary(result))
    print("RSS samples (s, MiB): " + ", ".join(f"{at:.0f}:{rss:.1f}"
                                              for at, rss in result["samples"]))


if __name__ == "__main__":
    main()
