"""The shop beside the API: the home page (a page of 24), product pages and
`GET /v1/products?limit=25`, in alternating rounds against one real server on the same
10,000-product catalog.

    python bench/bench_storefront.py [--products 10000] [--rounds 3] [--seconds 5]

Run alone, it prints the figures and records them under "storefront" in bench/results.json;
bench/run_all.py runs it with the others. Ratios are those of the rounds' medians. Targets: the
home page serves at least half the list page's requests per second, with a p99 at most
twice the list page's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_products import seed  # noqa: E402
from bench.common import BenchServer, load, record, request  # noqa: E402

# A search that no name matches reads every active product's name: the slowest search.
PAGES = {"list": ["/v1/products?limit=25"], "home": ["/test/"], "search": ["/test/?q=no+match"]}


def product_paths(server: BenchServer, secret: str) -> list[str]:
    """The pages of the 25 newest products."""
    status, body = request("GET", server.port, PAGES["list"][0], secret=secret)
    assert status == 200, body
    return [f"/test/product/{product['slug']}" for product in body["data"]]


def compare(products: int, rounds: int, seconds: float) -> dict:
    server = BenchServer()
    server.cli("init")
    secret = server.mint()
    seed(server.database, products)
    server.start()
    try:
        pages = {**PAGES, "product": product_paths(server, secret)}
        runs = {name: [] for name in pages}
        for _ in range(rounds):
            for name, paths in pages.items():
                runs[name].append(load(server.port, secret, paths, seconds))
    finally:
        server.stop()
    figures = {name: {key: statistics.median(run[key] for run in named)
                      for key in ("rps", "p50_ms", "p99_ms")} | {
                          "errors": sum(run["errors"] for run in named)}
               for name, named in runs.items()}
    figures["home_rps_ratio"] = figures["home"]["rps"] / figures["list"]["rps"]
    figures["home_p99_ratio"] = figures["home"]["p99_ms"] / figures["list"]["p99_ms"]
    return {"products": products, "rounds": rounds, "seconds": seconds, **figures}


def summary(figures: dict) -> str:
    lines = [f"{name}: {figures[name]['rps']:.0f} req/s, p50 {figures[name]['p50_ms']:.1f} ms, "
             f"p99 {figures[name]['p99_ms']:.1f} ms, {figures[name]['errors']} errors"
             for name in ("home", "search", "product", "list")]
    lines.append(f"home/list: req/s {figures['home_rps_ratio']:.2f} (target ≥ 0.5), "
                 f"p99 {figures['home_p99_ratio']:.2f} (target ≤ 2); {figures['products']} "
                 f"products, median of {figures['rounds']} rounds of {figures['seconds']:g} s")
    return "\n".join(lines)



def rows(figures: dict) -> list[str]:
    """The rows of docs/performance.md's table."""
    home, product, listed = figures["home"], figures["product"], figures["list"]
    scenario = f"shop home, 24 per page, {figures['products']:,} products"
    return [f"| GET / ({scenario}): req/s | {home['rps']:.0f} | GET /v1/products, 25 per page: "
            f"{listed['rps']:.0f} | {figures['home_rps_ratio']:.2f} (≥ 0.5) |",
            f"| GET / ({scenario}): p99 | {home['p99_ms']:.1f} ms | GET /v1/products: "
            f"{listed['p99_ms']:.1f} ms | {figures['home_p99_ratio']:.2f} (≤ 2) |",
            f"| GET /?q=no+match (a search reading every name): req/s, p99 | "
            f"{figures['search']['rps']:.0f}, {figures['search']['p99_ms']:.1f} ms | "
            f"GET /v1/products: {listed['rps']:.0f}, {listed['p99_ms']:.1f} ms | "
            f"{figures['search']['rps'] / listed['rps']:.2f} |",
            f"| GET /product/{{slug}}: req/s, p99 | {product['rps']:.0f}, "
            f"{product['p99_ms']:.1f} ms | GET /v1/products: {listed['rps']:.0f}, "
            f"{listed['p99_ms']:.1f} ms | {product['rps'] / listed['rps']:.2f} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    figures = compare(args.products, args.rounds, args.seconds)
    print(summary(figures))
    record("storefront", figures)


if __name__ == "__main__":
    main()
