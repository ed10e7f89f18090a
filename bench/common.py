"""Shared pieces of the benchmarks: a server in a temporary folder and a load generator.

The load generator runs in its own process (so it does not share the server's GIL) with a
few threads, each holding one keep-alive connection, and reports throughput and latency
percentiles. Figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results.json"
UNLIMITED = ("[limits]\nreads_per_minute = 100000000\nwrites_per_minute = 100000000\n"
             "failed_auths_per_minute_per_ip = 100000000\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchServer:
    """`sellix-lite serve` in a temporary data folder, with rate limits out of the way."""

    def __init__(self, extra_config: str = ""):
        self.root = Path(tempfile.mkdtemp(prefix="sellix-bench-"))
        self.port = free_port()
        self.config = self.root / "config.toml"
        self.config.write_text(f"[server]\nport = {self.port}\n"
                               f'[storage]\npath = "data/sellix.db"\n{UNLIMITED}{extra_config}')
        self.database = self.root / "data" / "sellix.db"
        self.log = self.root / "serve.log"  # the server's log lines, to look into a run
        # The checkout's modules get their bytecode cached, as `pip install` compiles an
        # installed package's; without it every start would compile them from source.
        self.env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                    "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(self.root / "pycache")}
        self.process = None

    def cli(self, *args) -> str:
        result = subprocess.run([sys.executable, "-m", "sellix_lite", "--config",
                                 str(self.config), *args], env=self.env, check=True,
                                capture_output=True, text=True)
        return result.stdout

    def mint(self, mode: str = "test") -> str:
        return self.cli("keys", "mint", "--name", "bench", "--all", "--mode", mode).split()[-1]

    def start(self) -> BenchServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sellix_lite", "--config", str(self.config), "serve"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if request("GET", self.port, "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.005)  # fine-grained: start-up time is one of the figures
        raise RuntimeError("the server did not start")

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)

    def stop(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def request(method: str, port: int, path: str, body=None, secret: str | None = None):
    """One request on a fresh connection: (status, parsed JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def call(conn: http.client.HTTPConnection, secret: str, method: str, path: str, body=None):
    """One request on a kept-alive connection: (status, parsed JSON body)."""
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {secret}",
                          "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else None


def run_in_threads(work, count: int) -> None:
    """Run `work(i)` for i in 0..count-1, each on its own thread, and wait for all."""
    workers = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _load_worker(port, secret, paths, seconds, threads, queue, method="GET", body=None):
    latencies, errors = [], [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run(offset):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        mine, index = [], offset
        while time.perf_counter() < stop_at:
            path = paths[index % len(paths)]
            index += threads
            started = time.perf_counter()
            payload = body.replace("{n}", f"{offset}-{index}").encode() if body else None
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status >= 300:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    run_in_threads(run, threads)
    queue.put((latencies, errors[0]))


def load(port: int, secret: str, paths: list[str], seconds: float = 10,
         threads: int = 8, method: str = "GET", body: str | None = None) -> dict:
    """Request `paths` round-robin for `seconds` from another process; figures as a dict.

    `body` may hold `{n}`, replaced by a number unique to each request.
    """
    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=_load_worker, args=(
        port, secret, paths, seconds, threads, queue, method, body))
    process.start()
    latencies, errors = queue.get()
    process.join()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def median(values) -> float:
    return statistics.median(values)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def record(name: str, figures: dict) -> None:
    """Put the figures under `name` in bench/results.json, keeping the rest."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = figures
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
