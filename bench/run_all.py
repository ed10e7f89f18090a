"""Every benchmark in one run, against the stack's own ceiling; writes docs/performance.md
(the summary) and bench/results.json (the raw figures of the run).

    python bench/run_all.py [--rounds 7] [--seconds 5] [--products 10000]
                            [--large-products 1000000] [--soak-minutes 10]

Machines are shared and absolute figures swing between runs, so each scenario runs as
alternating rounds (sellix-lite, ceiling, sellix-lite, ...) and reports the median of the
per-round ratios. A second shop of 1,000,000 products (`--large-products 0` leaves it out) is
served beside the first and read in rounds alternating with it for the scale figure. Orders,
webhooks, the license checks, the shop's pages and the memory soak come from the per-area
scripts, which also run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    bench_export,
    bench_group_commit,
    bench_licenses,
    bench_orders,
    bench_soak,
    bench_storefront,
    bench_webhooks,
)
from bench.common import REPO, BenchServer, cpu_seconds, free_port, load, request, rss_mib  # noqa: E402
from sellix_lite.config import Config  # noqa: E402
from sellix_lite.ids import new_id  # noqa: E402
from sellix_lite.security import load_secret_key  # noqa: E402
from sellix_lite.services.scope import Scope  # noqa: E402

OUTPUT = REPO / "docs" / "performance.md"
# Apart from the summary, so that a new run changes a few lines of the docs, not hundreds.
RESULTS = REPO / "bench" / "results.json"
NEW_PRODUCT = ('{"name": "Bench {n}", "type": "account", "price_cents": 100, '
               '"currency": "USD", "delivery_text": "x"}')


class Ceiling:
    """bench/ceiling.py as a subprocess over the same database file."""

    def __init__(self, database: Path):
        self.port = free_port()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "ceiling.py"), "--port", str(self.port),
             "--db", str(database)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self.port)
        self.startup = time.perf_counter() - started

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if request("GET", port, "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("a server did not start")


def seed(database: Path, count: int) -> None:
    """`count` products straight into the table (the shape the service writes)."""
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA synchronous = OFF")
    now = "2026-01-01T00:00:00Z"
    rows = ((new_id("prod"), "test", f"Product {i}", f"product-{i}", "account", 100 + i,
             "USD", "", None, "active", "x", now, now) for i in range(count))
    conn.executemany(
        "INSERT INTO products (id, mode, name, slug, type, price_cents, currency, description,"
        " stock, status, delivery_text, created_at, updated_at) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def measured(pid: int, port: int, secret: str, paths: list[str], seconds: float,
             method: str = "GET", body: str | None = None) -> dict:
    """Load figures plus the server's CPU time per request."""
    before = cpu_seconds(pid)
    figures = load(port, secret, paths, seconds, method=method, body=body)
    figures["cpu_ms"] = 1000 * (cpu_seconds(pid) - before) / max(figures["requests"], 1)
    return figures


def alternate(rounds: int, ours, ceiling) -> tuple[list[dict], list[dict]]:
    results = ([], [])
    for _ in range(rounds):
        results[0].append(ours())
        results[1].append(ceiling())
    return results


def ratio(ours: list[dict], ceiling: list[dict], key: str) -> float:
    return statistics.median(o[key] / c[key] for o, c in zip(ours, ceiling) if c[key])


def against(value: float, target: str) -> str:
    """`value` and its target (such as "≥ 0.6"). A value short of it says so, with three
    digits: rounded to two, 0.499 would print as a met 0.50."""
    sign, limit = target.split()
    met = value >= float(limit) if sign == "≥" else value <= float(limit)
    return f"{value:.2f} ({target})" if met else f"{value:.3f} ({target}, short)"


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def page_paths(database: Path, spread: int = 10) -> tuple[list[str], list[str]]:
    """The first page and pages starting at `spread` points through the catalog, as
    (our paths, the ceiling's paths): deep pages cost what the first one does."""
    conn = sqlite3.connect(database)
    count = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    ids = [conn.execute("SELECT id FROM products ORDER BY id DESC LIMIT 1 OFFSET ?",
                        (count * step // spread,)).fetchone()[0] for step in range(1, spread)]
    conn.close()
    scope = Scope.outside_requests(None, "test", Config(),
                                   load_secret_key("", database.parent))
    ours = ["/v1/products?limit=25"] + [
        f"/v1/products?limit=25&cursor={scope.cursor_after(i, 'products')}" for i in ids]
    return ours, ["/rows"] + [f"/rows?after={i}" for i in ids]


class Catalog:
    """Our server and the ceiling over one shop of `products` products, both kept running
    so that rounds at two catalog sizes can alternate."""

    def __init__(self, products: int):
        self.products = products
        self.server = BenchServer()
        self.server.cli("init")
        self.secret = self.server.mint()
        seed(self.server.database, products)
        self.ours_paths, self.ceiling_paths = page_paths(self.server.database)
        self.server.start()
        self.ceiling = Ceiling(self.server.database)
        self.idle = {"ours": self.server.rss_mib(), "ceiling": rss_mib(self.ceiling.process.pid)}

    def read_ours(self, seconds: float) -> dict:
        return measured(self.server.process.pid, self.server.port, self.secret,
                        self.ours_paths, seconds)

    def read_ceiling(self, seconds: float) -> dict:
        return measured(self.ceiling.process.pid, self.ceiling.port, "", self.ceiling_paths,
                        seconds)

    def write_ours(self, seconds: float) -> dict:
        return measured(self.server.process.pid, self.server.port, self.secret,
                        ["/v1/products"], seconds, "POST", NEW_PRODUCT)

    def write_ceiling(self, seconds: float) -> dict:
        return measured(self.ceiling.process.pid, self.ceiling.port, "", ["/insert"], seconds,
                        "POST", NEW_PRODUCT)

    def discard(self) -> None:
        """Stop both servers and delete the shop: a million products take 400 MB."""
        self.ceiling.stop()
        self.server.stop()
        shutil.rmtree(self.server.root, ignore_errors=True)


def reads(args, catalog: Catalog) -> dict:
    """List and create throughput against the ceiling, and idle memory."""
    ours, bare = alternate(args.rounds, lambda: catalog.read_ours(args.seconds),
                           lambda: catalog.read_ceiling(args.seconds))
    writes = alternate(args.rounds, lambda: catalog.write_ours(args.seconds),
                       lambda: catalog.write_ceiling(args.seconds))
    return {"products": catalog.products, "ours": ours, "ceiling": bare, "writes": writes,
            "idle": catalog.idle}


def scale(args, small: Catalog, large: Catalog) -> dict:
    """Our list throughput at two catalog sizes, alternated in the same window: rates
    measured minutes apart would carry the host's drift into their ratio."""
    at_small, at_large = alternate(args.rounds, lambda: small.read_ours(args.seconds),
                                   lambda: large.read_ours(args.seconds))
    return {"small": small.products, "large": large.products, "at_small": at_small,
            "at_large": at_large}


def startup(rounds: int) -> dict:
    """Seconds from launch to the first answered request, against importing the stack."""
    server = BenchServer()
    server.cli("init")
    _start_once(server)  # unmeasured: compiles the bytecode, as installing does
    ours, imports = alternate(rounds, lambda: {"seconds": _start_once(server)},
                              lambda: {"seconds": import_time()})
    return {"ours": ours, "imports": imports}


def _start_once(server: BenchServer) -> float:
    started = time.perf_counter()
    server.start()
    elapsed = time.perf_counter() - started
    server.stop()
    return elapsed


def import_time() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import flask, waitress, sqlite_utils"], check=True)
    return time.perf_counter() - started


def webhooks(args) -> dict:
    """Fan-out rate, and the API's p99 with and without a hanging endpoint, alternated."""
    rate = bench_webhooks.fan_out_rate(args.events)
    hanging, calm = alternate(args.rounds,
                              lambda: bench_webhooks.api_latency(args.seconds, True),
                              lambda: bench_webhooks.api_latency(args.seconds, False))
    return {"deliveries_per_second": rate, "events": args.events,
            "hanging": hanging, "calm": calm}


NOTES = """## Notes

**Orders and memory.** Each order flow commits about six transactions, synced to disk
(`synchronous = FULL`) in groups: the writes of the process share one connection, and one
sync commits every write that finished while the previous one ran (see the group commit
figure above). Writers of the process queue on an in-process mutex before SQLite's write
lock, because SQLite's busy handler sleeps and polls. A hanging webhook receiver holds one
sender thread and none of the API's. Memory growth is counted from the end of the first
minute, once SQLite's page caches (one connection per server thread) have filled.

**Where the time goes.** Both servers run their Python under one interpreter lock. A thread
releases it at each step of an SQLite statement (one per row), at each socket call and lock
wait; another thread takes it, and the first waits to get it back. Those hand-overs cost
context switches, not work, and under 8 connections they cost as much as the work.

- List pages: SQLite builds our page into one JSON array and hands it over in one step. A
  list request makes about 35 voluntary context switches, where fetching row by row made
  90 (the ceiling's makes about 85), and serves a third more pages per second. Beyond
  that, a list request passes through authentication (a key hash lookup that sees
  revocations at once), two rate-limit windows, query validation, cursor verification,
  rendering and its log line; measured inside the process (no HTTP), a deep page costs
  the app about twice the ceiling's time.
- Product creation writes the product (primary key, slug and three list indexes) and its
  `product.created` event (two indexes), and looks up the webhook endpoints to fan out to:
  six or seven statements in one transaction synced to disk, where the ceiling's insert
  is three statements and one row with no secondary index. The ceiling's inserts are
  bound by the disk: each waits for its own sync, off the interpreter lock. Ours share
  syncs, so they are bound by the interpreter lock instead, with about three times the
  ceiling's context switches per request. Our median write latency is what 8 connections
  at our rate give (8 / writes per second, as every write waits for its group's sync);
  the ceiling's median is lower and its p99 far higher, as SQLite's busy handler lets some
  inserts through at once and puts others to sleep.
- What helped writes: request log lines written in batches, at most 0.1 s late (one write
  for many requests); a 1 ms switch interval instead of Python's 5 ms, so that waitress's
  one network thread waits less behind a busy worker (write ratio about 0.50 to 0.54);
  SQLite's temporary pages in memory rather than a temporary file for each group's
  savepoints (2-9%).
- What did not: committing each write on its own instead of in groups (0.49 against
  0.51-0.55), 4 server threads instead of 8, switch intervals of 0.2 ms and 50 ms, and
  leaving out the webhook endpoint lookup (no measurable change).
- On a disk with slower syncs, as on small virtual servers, the ceiling slows with the
  disk and we do not.

**Orders export.** The CSV is read in keyset pages of 500 orders, each a short query of its
own, and handed to waitress 100 rows at a time, so the rows held at once don't depend on how
many orders there are. waitress keeps what a client has not read yet: past 1 MiB unsent
(`outbuf_high_watermark`, 16 MiB by default) the export waits for the client. The growth
measured is the same for 100,000 and 300,000 orders; most of it is the malloc arena of the
thread that served the export, kept for that thread's next request.

**License checks.** A public `validate` reads the license by its key (an index) and the
instance, then signs a lease with Ed25519 (pycryptodome; the parsed signing key is kept, as
parsing it costs more than signing). It has no key to look up and no write to make, so it
runs about as fast as a list page, signature included; `activate` writes, as a product
create does.

**The shop's pages.** The home page is a keyset page of the active products on the
`(mode, status, id)` index, 24 of them rendered through a template, so it costs about what a
list page does and does not grow with the catalog; a product page is one lookup by slug.
A name search (`?q=`) is a `LIKE '%…%'`, which no index serves: it reads the active products
newest first until it has a page, so a search that matches nothing reads every name.

**Start-up** imports some sixty modules of ours and APScheduler on top of the three
libraries the baseline imports, and registers 88 URL rules, whose URL builders compile on
first use (compiling them all took two thirds of building the app). It is timed with our
bytecode compiled, as after `pip install` (an unmeasured first start compiles it), since
the baseline's libraries are installed compiled.
"""


def report(runs: list[dict], scaled: dict | None, starts: dict, orders: dict, groups: dict,
           hooks: dict, checks: dict, shop: dict, exported: dict, soak: dict | None,
           args) -> str:
    out = ["# Performance", "",
           "Written by `python bench/run_all.py`: the real server (waitress, 8 threads) on "
           "loopback, loaded from a second process with 8 keep-alive connections, against the "
           "stack's ceiling measured in the same run (`bench/ceiling.py`: a bare Flask app on "
           "waitress reading the same pages of 25 rows from the same SQLite file, and "
           "inserting one row with the same durability). Each scenario ran "
           f"{args.rounds} alternating rounds of {args.seconds:g} s; ratios are medians of the "
           "per-round ratios, so they hold across machines better than absolute figures. No "
           "test asserts a time.", "",
           f"Machine of this run: {platform.machine()}, Python {platform.python_version()}, "
           f"{os.cpu_count()} cores shared by the server and the load generator; packages "
           "as `pip install .` installs them.", "",
           "| scenario | sellix-lite | ceiling | ratio (target) |", "|---|---|---|---|"]
    for run in runs:
        out += _catalog_rows(run)
    out.append(f"| start-up to the first answer | {median(starts['ours'], 'seconds'):.2f} s | "
               f"importing flask, waitress, sqlite_utils: "
               f"{median(starts['imports'], 'seconds'):.2f} s | "
               f"{against(ratio(starts['ours'], starts['imports'], 'seconds'), '≤ 1.5')} |")
    hang, calm = hooks["hanging"], hooks["calm"]
    out.append(f"| GET /v1/products p99 while a hanging webhook endpoint is retried | "
               f"{median(hang, 'p99_ms'):.1f} ms | no endpoint: {median(calm, 'p99_ms'):.1f} ms"
               f" | {against(ratio(hang, calm, 'p99_ms'), '≤ 2')} |")
    out.append(f"| POST /v1/licenses/validate, no key, lease signed: req/s | "
               f"{median(checks['validate'], 'rps'):.0f} | GET /v1/products, 25 per page: "
               f"{median(checks['list'], 'rps'):.0f} | {against(checks['ratio'], '≥ 0.5')} |")
    out += bench_storefront.rows(shop)
    if soak:
        out.append(f"| RSS growth over {soak['minutes']:g} min of mixed load | "
                   f"{soak['growth']:+.1f} MiB | | (< 10 MB) |")
    if scaled:
        value = ratio(scaled["at_large"], scaled["at_small"], "rps")
        out += ["", f"Throughput at {scaled['large']:,} products over throughput at "
                f"{scaled['small']:,}, the two shops served side by side and read in "
                f"alternating rounds: {against(value, '≥ 0.8')}, the median of "
                f"{len(scaled['at_large'])} per-round ratios. Pages are keyset queries on an "
                "index, with no count and no OFFSET. The pages read are the first and nine "
                "starting at tenths of the catalog."]
    out += ["", "## Orders, webhooks and memory", "",
            f"- {bench_orders.summary(orders)}",
            f"- {bench_group_commit.summary(groups)}",
            f"- webhook fan-out: {hooks['deliveries_per_second']:.0f} deliveries/s, "
            f"{hooks['deliveries_per_second'] / bench_webhooks.RECEIVERS:.1f} events/s "
            f"({hooks['events']} events to {bench_webhooks.RECEIVERS} local receivers)",
            f"- {bench_export.summary(exported)}"]
    if soak:
        out.append(f"- {bench_soak.summary(soak)}")
    out += ["", NOTES, f"The raw figures of this run are in [{RESULTS.name}]"
            f"(../{RESULTS.relative_to(REPO).as_posix()}).", ""]
    return "\n".join(out)


def _catalog_rows(run: dict) -> list[str]:
    ours, bare, (w_ours, w_bare) = run["ours"], run["ceiling"], run["writes"]
    label = f"GET /v1/products, 25 per page, {run['products']:,} products"
    return [
        f"| {label}: req/s | {median(ours, 'rps'):.0f} | {median(bare, 'rps'):.0f} | "
        f"{against(ratio(ours, bare, 'rps'), '≥ 0.6')} |",
        f"| {label}: p50 | {median(ours, 'p50_ms'):.1f} ms | {median(bare, 'p50_ms'):.1f} ms"
        f" | {ratio(ours, bare, 'p50_ms'):.2f} |",
        f"| {label}: p99 | {median(ours, 'p99_ms'):.1f} ms | {median(bare, 'p99_ms'):.1f} ms"
        f" | {against(ratio(ours, bare, 'p99_ms'), '≤ 2')} |",
        f"| {label}: CPU per request | {median(ours, 'cpu_ms'):.2f} ms | "
        f"{median(bare, 'cpu_ms'):.2f} ms | {against(ratio(ours, bare, 'cpu_ms'), '≤ 2')} |",
        f"| POST /v1/products ({run['products']:,} products): writes/s | "
        f"{median(w_ours, 'rps'):.0f} | {median(w_bare, 'rps'):.0f} | "
        f"{against(ratio(w_ours, w_bare, 'rps'), '≥ 0.5')} |",
        f"| POST /v1/products ({run['products']:,} products): p50 | "
        f"{median(w_ours, 'p50_ms'):.1f} ms | {median(w_bare, 'p50_ms'):.1f} ms | "
        f"{ratio(w_ours, w_bare, 'p50_ms'):.2f} |",
        f"| POST /v1/products ({run['products']:,} products): p99 | "
        f"{median(w_ours, 'p99_ms'):.1f} ms | {median(w_bare, 'p99_ms'):.1f} ms | "
        f"{ratio(w_ours, w_bare, 'p99_ms'):.2f} |",
        f"| idle RSS ({run['products']:,} products) | {run['idle']['ours']:.1f} MiB | "
        f"{run['idle']['ceiling']:.1f} MiB | "
        f"{against(run['idle']['ours'] / run['idle']['ceiling'], '≤ 1.5')} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--large-products", type=int, default=1_000_000,
                        help="products in the second shop, for the scale figure; 0 skips it")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--soak-minutes", type=float, default=10,
                        help="minutes of mixed load for memory growth; 0 skips it")
    args = parser.parse_args()
    sizes = [args.products] + ([args.large_products] if args.large_products else [])
    catalogs = []
    try:
        for size in sizes:
            catalogs.append(Catalog(size))
        # Before any round writes products, so each catalog keeps its size.
        scaled = scale(args, *catalogs) if len(catalogs) == 2 else None
        runs = [reads(args, catalog) for catalog in catalogs]
    finally:
        for catalog in catalogs:
            catalog.discard()
    starts = startup(max(args.rounds, 5))
    orders = bench_orders.order_flows(args.seconds, 8)
    groups = bench_group_commit.compare(rounds=args.rounds)
    hooks = webhooks(args)
    checks = bench_licenses.compare(args.rounds, args.seconds)
    shop = bench_storefront.compare(args.products, args.rounds, args.seconds)
    exported = bench_export.measure(100_000)
    soak = bench_soak.soak(args.soak_minutes, 4) if args.soak_minutes else None
    RESULTS.write_text(json.dumps({"catalog": runs, "scale": scaled, "startup": starts,
                                   "orders": orders, "group_commit": groups,
                                   "webhooks": hooks, "licenses": checks, "storefront": shop,
                                   "export": exported, "soak": soak},
                                  indent=1) + "\n")
    OUTPUT.write_text(report(runs, scaled, starts, orders, groups, hooks, checks, shop,
                             exported, soak, args))
    print(OUTPUT.read_text())


if __name__ == "__main__":
    main()
