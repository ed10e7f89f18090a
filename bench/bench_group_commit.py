"""Group commit: how many writes one sync to disk serves, and what that does to the rate.

Threads of one process each write one row per transaction, with the durability the shop
uses (WAL, `synchronous = FULL`), in two ways taking turns: through `db.write_txn`, which
commits the writes that finished meanwhile together, and with one COMMIT, so one sync, per
write behind a mutex, as before group commit. The number of syncs is the number of COMMITs
the shared writer ran.

    python bench/bench_group_commit.py [--threads 8] [--writes 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sellix_lite import db as storage  # noqa: E402

ROW = "x" * 200


def grouped(path: Path, threads: int, writes: int) -> dict:
    """Rows written through write_txn; returns writes/s and syncs per write."""
    writer = storage.SharedWriter.of(path)
    commits = []
    writer.conn.set_trace_callback(lambda sql: sql == "COMMIT" and commits.append(1))

    def work():
        db = storage.connect(path)
        for _ in range(writes):
            with storage.write_txn(db):
                db.execute("INSERT INTO rows (body) VALUES (?)", (ROW,))
        db.close()

    seconds = _timed(work, threads)
    writer.conn.set_trace_callback(None)
    return {"writes_per_second": threads * writes / seconds,
            "syncs_per_write": len(commits) / (threads * writes)}


def one_sync_each(path: Path, threads: int, writes: int) -> dict:
    """The same rows, each write its own transaction and sync, queued on a mutex."""
    mutex = threading.Lock()

    def work():
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA synchronous = FULL")
        for _ in range(writes):
            with mutex:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO rows (body) VALUES (?)", (ROW,))
                conn.execute("COMMIT")
        conn.close()

    seconds = _timed(work, threads)
    return {"writes_per_second": threads * writes / seconds, "syncs_per_write": 1.0}


def _timed(work, threads: int) -> float:
    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def compare(threads: int = 8, writes: int = 300, rounds: int = 3) -> dict:
    """Alternating rounds of both ways on one file; medians of each figure."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.db"
        setup = storage.connect(path)
        storage.enable_wal(setup)
        setup.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        results = {"grouped": [], "one_sync_each": []}
        for _ in range(rounds):
            results["grouped"].append(grouped(path, threads, writes))
            results["one_sync_each"].append(one_sync_each(path, threads, writes))
        setup.close()
    figures = {way: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for way, runs in results.items()}
    figures.update(threads=threads, writes_per_thread=writes, rounds=rounds)
    return figures


def summary(figures: dict) -> str:
    in_groups, single = figures["grouped"], figures["one_sync_each"]
    return (f"group commit: {figures['threads']} threads writing one row per transaction, "
            f"{in_groups['writes_per_second']:.0f} writes/s with "
            f"{in_groups['syncs_per_write']:.2f} syncs per write, against "
            f"{single['writes_per_second']:.0f} writes/s with one sync each "
            f"({in_groups['writes_per_second'] / single['writes_per_second']:.1f} ×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(summary(compare(args.threads, args.writes, args.rounds)))


if __name__ == "__main__":
    main()
