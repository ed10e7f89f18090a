"""The orders export: `GET /v1/orders/export.csv` over 100,000 orders against a real server,
read by a client in 64 KiB chunks, with the server's resident memory (VmRSS) sampled every
20 ms before, during and after.

    python bench/bench_export.py [--orders 100000]

The orders are copies of one paid order placed through the API, written straight into the
database file in one transaction (the export reads them; how they came there is not what is
measured). Prints rows per second and the RSS growth, and records them under "export" in
bench/results.json.
"""

from __future__ import annotations

import argparse
import http.client
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchServer, record, request  # noqa: E402

CHUNK = 64 * 1024


def seed(server: BenchServer, secret: str, count: int) -> None:
    """One paid order through the API, then `count - 1` copies of it under new ids."""
    port = server.port
    status, product = request("POST", port, "/v1/products", secret=secret, body={
        "name": "Export, \"bench\"", "type": "account", "price_cents": 100,
        "currency": "USD", "delivery_text": "x"})
    assert status == 201, product
    status, order = request("POST", port, "/v1/orders", secret=secret, body={
        "product_id": product["id"], "customer_email": "bench@example.com"})
    assert status == 201, order
    request("POST", port, f"/v1/test_helpers/orders/{order['id']}/pay", secret=secret,
            body={})
    conn = sqlite3.connect(server.database, timeout=60, isolation_level=None)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(orders)")]
    copied = ", ".join("'ord_' || printf('%026d', n)" if name == "id" else
                       "NULL" if name == "invoice_id" else name for name in columns)
    conn.execute("BEGIN")
    conn.execute(f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
                 f"WHERE n < ?) INSERT INTO orders ({', '.join(columns)}) "
                 f"SELECT {copied} FROM seq, orders WHERE orders.id = ?",
                 (count - 1, order["id"]))
    conn.execute("COMMIT")
    conn.close()


def export(server: BenchServer, secret: str) -> dict:
    """Stream the export once; its rows, bytes, seconds and the server's RSS samples."""
    samples, reading = [], threading.Event()

    def sample():
        while not reading.is_set():
            samples.append(server.rss_mib())
            time.sleep(0.02)  # the sampling period, not a wait for a condition

    before = server.rss_mib()
    sampler = threading.Thread(target=sample)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    started = time.perf_counter()
    sampler.start()
    conn.request("GET", "/v1/orders/export.csv", headers={"Authorization": f"Bearer {secret}"})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    size = lines = 0
    while chunk := response.read(CHUNK):
        size += len(chunk)
        lines += chunk.count(b"\r\n")
    seconds = time.perf_counter() - started
    reading.set()
    sampler.join()
    conn.close()
    after = server.rss_mib()
    return {"rows": lines - 1, "bytes": size, "seconds": round(seconds, 2),
            "rows_per_second": round((lines - 1) / seconds),
            "rss_before_mib": round(before, 1), "rss_peak_mib": round(max(*samples, after), 1),
            "rss_after_mib": round(after, 1),
            "rss_growth_mib": round(max(*samples, after) - before, 1)}


def measure(orders: int) -> dict:
    """A warm-up export, then two measured ones, of a shop of `orders` orders."""
    server = BenchServer()
    secret = server.mint()
    server.start()
    try:
        seed(server, secret, orders)
        export(server, secret)  # warm-up: the first request imports and caches
        return {"orders": orders, "runs": [export(server, secret) for _ in range(2)]}
    finally:
        server.stop()


def summary(figures: dict) -> str:
    run = min(figures["runs"], key=lambda run: run["rows_per_second"])
    return (f"orders export: {run['rows']:,} rows ({run['bytes'] / 2**20:.1f} MiB of CSV) in "
            f"{run['seconds']} s, {run['rows_per_second']:,} rows/s; server RSS "
            f"{run['rss_before_mib']} MiB before, +{run['rss_growth_mib']} MiB at its peak "
            f"(< 20 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    figures = measure(args.orders)
    print(summary(figures))
    record("export", figures)


if __name__ == "__main__":
    main()
