"""Webhook benchmark: events delivered per second to 10 local receivers, and the API's
latency while a hanging endpoint is being retried.

    python bench/bench_webhooks.py [--products 200] [--seconds 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchServer, free_port, load, request  # noqa: E402

RECEIVERS = 10


def _serve_receivers(ports, counter, hang_port):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.server.server_port == hang_port:
                time.sleep(30)
            with counter.get_lock():
                counter.value += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    import threading

    servers = [ThreadingHTTPServer(("127.0.0.1", port), Handler) for port in ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        time.sleep(3600)


def start_receivers(ports, hang_port=None):
    counter = multiprocessing.Value("i", 0)
    process = multiprocessing.Process(target=_serve_receivers, args=(ports, counter, hang_port),
                                      daemon=True)
    process.start()
    time.sleep(0.5)
    return process, counter


def register(server, secret, url):
    status, body = request("POST", server.port, "/v1/webhooks", secret=secret,
                           body={"url": url, "events": ["*"]})
    assert status == 201, body


def create_products(server, secret, count):
    for index in range(count):
        request("POST", server.port, "/v1/products", secret=secret, body={
            "name": f"P{index}", "type": "account", "price_cents": 100, "currency": "USD"})


def fan_out_rate(products: int) -> float:
    server = BenchServer("[jobs]\ntick_seconds = 1\n")
    server.cli("init")
    secret = server.mint()
    server.start()
    ports = [free_port() for _ in range(RECEIVERS)]
    receivers, counter = start_receivers(ports)
    try:
        for port in ports:
            register(server, secret, f"http://127.0.0.1:{port}/hook")
        expected = products * RECEIVERS
        started = time.perf_counter()
        create_products(server, secret, products)
        while counter.value < expected and time.perf_counter() - started < 300:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        return counter.value / elapsed
    finally:
        receivers.terminate()
        server.stop()


def api_latency(seconds: float, with_hanging_endpoint: bool) -> dict:
    server = BenchServer("[jobs]\ntick_seconds = 1\n[webhooks]\ntimeout_seconds = 2\n"
                         "retry_schedule = [1, 1, 1, 1, 1, 1, 1]\n")
    server.cli("init")
    secret = server.mint()
    server.start()
    hang_port = free_port()
    receivers, _ = start_receivers([hang_port], hang_port=hang_port)
    try:
        if with_hanging_endpoint:
            register(server, secret, f"http://127.0.0.1:{hang_port}/hook")
        create_products(server, secret, 50)
        return load(server.port, secret, ["/v1/products?limit=25"], seconds)
    finally:
        receivers.terminate()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    rate = fan_out_rate(args.products)
    print(f"webhook fan-out: {rate:.0f} deliveries/s ({args.products} events x "
          f"{RECEIVERS} endpoints)")
    for hanging in (False, True):
        figures = api_latency(args.seconds, hanging)
        label = "with a hanging endpoint being retried" if hanging else "no webhook endpoint"
        print(f"GET /v1/products?limit=25, {label}: {figures['rps']:.0f} req/s, "
              f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
