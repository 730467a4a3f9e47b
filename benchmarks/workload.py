"""The messages both benchmarks send: e-mail notifications with a unique key each.

Each payload is about 220 bytes of canonical JSON: an address, a subject, a template name
and a few fields.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def make_message(index: int) -> dict:
    """Return message number `index`, whose key and payload depend only on the index."""
    payload = {
        "to": f"customer-{index:07d}@example.com",
        "subject": f"Your order {index:07d} has shipped",
        "order_id": index,
        "template": "order-shipped",
        "locale": "en-GB",
        "tracking_url": f"https://tracking.example.com/parcels/{index:012d}",
        "amount": round(index * 0.37 % 500, 2),
    }
    return {"type": "EmailMessage", "transport": "email", "priority": 5,
            "idempotency_key": f"order-shipped-{index:07d}", "payload": payload}


def make_messages(count: int) -> list[dict]:
    return [make_message(index) for index in range(count)]


def write_jsonl(path: Path, count: int) -> None:
    """Write `count` messages as JSON Lines, one at a time, so memory does not grow with count."""
    with path.open("w", encoding="utf-8") as stream:
        for index in range(count):
            stream.write(json.dumps(make_message(index), ensure_ascii=False) + "\n")


@contextlib.contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """Create a database of our own on the server, yield its connection string, drop it after."""
    import psycopg  # imported here so that SQLite-only runs work without a server
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"symphony_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
