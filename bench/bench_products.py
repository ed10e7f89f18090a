"""Catalog benchmark: list throughput with 10,000 products, and a 5,000-key import.

    python bench/bench_products.py [--products 10000] [--seconds 10]

Seeds the catalog through the service layer (the same code path as POST /v1/products, with
synchronous writes off for the seeding connection only), then measures the real server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchServer, load, median, request  # noqa: E402
from sellix_lite import db as storage  # noqa: E402
from sellix_lite.config import Config  # noqa: E402
from sellix_lite.services import products  # noqa: E402
from sellix_lite.services.scope import Scope  # noqa: E402


def seed(database: Path, count: int) -> None:
    db = storage.connect(database)
    db.execute("PRAGMA synchronous = OFF")
    scope = Scope.outside_requests(db, "test", Config(), "seed")
    for index in range(count):
        products.create(scope, {"name": f"Product {index}", "type": "account",
                                "price_cents": 100 + index, "currency": "USD",
                                "delivery_text": "secret"})
    db.close()


def page_paths(server: BenchServer, secret: str, pages: int) -> list[str]:
    """The first `pages` page URLs of the product list (following next_cursor)."""
    paths, path = [], "/v1/products?limit=25"
    while len(paths) < pages and path:
        paths.append(path)
        _, body = request("GET", server.port, path, secret=secret)
        path = f"/v1/products?limit=25&cursor={body['next_cursor']}" if body["has_more"] else None
    return paths


def key_import_seconds(server: BenchServer, secret: str, runs: int = 5) -> float:
    timings = []
    for run in range(runs):
        _, product = request("POST", server.port, "/v1/products", secret=secret, body={
            "name": f"Keys {run}", "type": "license_key", "price_cents": 100, "currency": "USD"})
        keys = [f"KEY-{run}-{index:05d}-XXXX-YYYY" for index in range(5000)]
        started = time.perf_counter()
        status, body = request("POST", server.port, f"/v1/products/{product['id']}/keys",
                               secret=secret, body={"keys": keys})
        timings.append(time.perf_counter() - started)
        assert status == 201 and body["imported"] == 5000, body
    return median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    server = BenchServer()
    server.cli("init")
    secret = server.mint()
    started = time.perf_counter()
    seed(server.database, args.products)
    print(f"seeded {args.products} products in {time.perf_counter() - started:.1f} s")
    server.start()
    try:
        print(f"server RSS idle: {server.rss_mib():.1f} MiB")
        first = load(server.port, secret, ["/v1/products?limit=25"], args.seconds)
        deep = load(server.port, secret, page_paths(server, secret, 200), args.seconds)
        import_s = key_import_seconds(server, secret)
        print(f"server RSS after load: {server.rss_mib():.1f} MiB")
    finally:
        server.stop()
    for name, figures in (("first page", first), ("pages 1-200", deep)):
        print(f"GET /v1/products?limit=25 ({name}): {figures['rps']:.0f} req/s, "
              f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
              f"{figures['requests']} requests, {figures['errors']} errors")
    print(f"POST /v1/products/{{id}}/keys with 5,000 keys: {import_s * 1000:.0f} ms (median of 5)")


if __name__ == "__main__":
    main()
