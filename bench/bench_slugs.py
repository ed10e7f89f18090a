"""Slugs: what creating a product costs when many already share its name.

    python bench/bench_slugs.py [--products 5000] [--window 200]

Creates `--products` products named alike ("Same Name": slugs `same-name`, `same-name-2`,
...) and as many with names of their own, through the service layer (the code path of
POST /v1/products) on a fresh database, and prints the mean time per create over windows
of `--window` creates: CPU time (of this process, so other processes on the machine skew it
less than wall time would) and SQLite virtual machine instructions (which nothing else
skews). A cost that grows with the count of `same-name-N` slugs shows as rising "same"
columns. Synchronous writes are off, so the figures are the work of the create itself
rather than the disk's sync time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sellix_lite import db as storage  # noqa: E402
from sellix_lite.config import Config  # noqa: E402
from sellix_lite.migrations import migrate  # noqa: E402
from sellix_lite.services import products  # noqa: E402
from sellix_lite.services.scope import Scope  # noqa: E402


class StepCounter:
    """Counts the SQLite virtual machine's instructions on the connections given, in
    hundreds: a measure of the work done that other processes on the machine don't skew."""

    def __init__(self, *connections):
        self.hundreds = 0
        for conn in connections:
            conn.set_progress_handler(self._step, 100)

    def _step(self) -> int:
        self.hundreds += 1
        return 0


def create_costs(path: Path, count: int, name) -> tuple[list[float], list[int]]:
    """CPU seconds and SQLite instructions (hundreds) of each of `count` creates;
    `name(index)` names product `index`."""
    db = storage.connect(path)
    db.execute("PRAGMA synchronous = OFF")
    migrate(db)
    steps = StepCounter(db.conn, storage.SharedWriter.of(path).conn)
    scope = Scope.outside_requests(db, "test", Config(), "bench")
    seconds, hundreds = [], []
    try:
        for index in range(count):
            body = {"name": name(index), "type": "account", "price_cents": 100,
                    "currency": "USD", "delivery_text": "secret"}
            started, steps_before = time.process_time(), steps.hundreds
            products.create(scope, body)
            seconds.append(time.process_time() - started)
            hundreds.append(steps.hundreds - steps_before)
    finally:
        db.close()
    return seconds, hundreds


def window_means(values: list[float], window: int) -> list[float]:
    return [statistics.mean(values[start:start + window])
            for start in range(0, len(values) - window + 1, window)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sellix-bench-slugs-") as folder:
        create_costs(Path(folder) / "warm-up.db", 100, lambda i: "Warm Up")  # first calls
        same = create_costs(Path(folder) / "same.db", args.products, lambda i: "Same Name")
        own = create_costs(Path(folder) / "own.db", args.products, lambda i: f"Product {i}")
    columns = [window_means([s * 1000 for s in same[0]], args.window),
               window_means([s * 1000 for s in own[0]], args.window),
               window_means([h / 10 for h in same[1]], args.window),
               window_means([h / 10 for h in own[1]], args.window)]
    print(f"per create, mean over each {args.window} creates: CPU ms, and thousands of "
          "SQLite instructions")
    print(f"{'products before':>16} {'ms same':>8} {'ms own':>8} {'k-ins same':>11} "
          f"{'k-ins own':>10}")
    for index, row in enumerate(zip(*columns)):
        print(f"{index * args.window:>16} {row[0]:>8.2f} {row[1]:>8.2f} {row[2]:>11.1f} "
              f"{row[3]:>10.1f}")
    print(f"same name, last window / first: {columns[0][-1] / columns[0][0]:.2f}x CPU, "
          f"{columns[2][-1] / columns[2][0]:.2f}x instructions; own names: "
          f"{columns[1][-1] / columns[1][0]:.2f}x CPU, "
          f"{columns[3][-1] / columns[3][0]:.2f}x instructions")


if __name__ == "__main__":
    main()
