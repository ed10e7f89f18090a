"""The stack's ceiling: a bare Flask app on waitress doing the least work our routes do.

    python bench/ceiling.py --port P --db PATH

`GET /fixed` answers a fixed JSON document; `GET /rows` reads a page of 25 products from
SQLite (the same keyset query and index as ours); `POST /insert` inserts one row in its own
`BEGIN IMMEDIATE` transaction with the same durability (WAL, synchronous FULL). Figures of
sellix-lite are reported as ratios to these, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading

import waitress
from flask import Flask, Response, request

FIXED = json.dumps({"object": "list", "data": [{"id": f"prod_{i}", "name": "x"} for i in range(25)],
                    "has_more": True, "next_cursor": "c"})


def create(db_path: str) -> Flask:
    app = Flask(__name__)
    local = threading.local()

    def db() -> sqlite3.Connection:
        if not hasattr(local, "conn"):
            local.conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
            local.conn.execute("PRAGMA synchronous = FULL")
        return local.conn

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/fixed")
    def fixed():
        return Response(FIXED, mimetype="application/json")

    @app.get("/rows")
    def rows():
        cursor = db().execute("SELECT * FROM products WHERE mode = 'test' AND id < ? "
                              "ORDER BY id DESC LIMIT 26", (request.args.get("after", "~"),))
        names = [c[0] for c in cursor.description]
        data = [dict(zip(names, row)) for row in cursor.fetchall()][:25]
        return Response(json.dumps({"object": "list", "data": data}), mimetype="application/json")

    @app.post("/insert")
    def insert():
        conn = db()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO ceiling_rows (body) VALUES (?)", (request.get_data(),))
        conn.execute("COMMIT")
        return Response('{"ok": true}', status=201, mimetype="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    conn = sqlite3.connect(args.db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS ceiling_rows (id INTEGER PRIMARY KEY, body BLOB)")
    conn.close()
    waitress.serve(create(args.db), host="127.0.0.1", port=args.port, threads=8,
                   _quiet=True)


if __name__ == "__main__":
    main()
