"""The orders-like dataset: table, rows, the change backlog, and the comparisons of both sides.

Types as the benchmark issue asks: BIGINT key, INT, ENUM, DECIMAL(12,2), VARCHAR(200), JSON,
DATETIME(6), TIMESTAMP. Values are seeded and reproducible. Timestamps of generated rows lie in
2023-2024, so a change written now (``updated_at = NOW(6)``) is always recognisable.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pymysql

DATABASE = "bench"
TABLE = "orders"
COLUMNS = ["id", "customer_id", "status", "amount", "note", "attrs", "updated_at", "created_at"]
STATUSES = ("new", "paid", "shipped", "delivered", "cancelled", "refunded")
DDL = f"""
CREATE TABLE `{DATABASE}`.`{TABLE}` (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  status ENUM({", ".join(f"'{s}'" for s in STATUSES)}) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  note VARCHAR(200) NULL,
  attrs JSON NULL,
  updated_at DATETIME(6) NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB
"""
SRC = f"`{DATABASE}`.`{TABLE}`"
_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "express",
    "gift",
    "wrap",
    "fragile",
    "leave",
    "at",
    "door",
    "call",
    "before",
    "delivery",
    "priority",
    "backorder",
]
_EPOCH = dt.datetime(2023, 1, 1)


def _note(rnd: random.Random) -> str | None:
    if rnd.random() < 0.1:
        return None
    n = rnd.randint(3, 25)
    return " ".join(rnd.choice(_WORDS) for _ in range(n))[:200]


def _attrs(rnd: random.Random, i: int) -> str | None:
    if rnd.random() < 0.05:
        return None
    doc = {
        "sku": f"SKU-{rnd.randint(1, 99999):05d}",
        "qty": rnd.randint(1, 9),
        "gift": rnd.random() < 0.1,
        "tags": rnd.sample(["web", "app", "b2b", "promo", "vip", "eu", "us"], rnd.randint(0, 3)),
        "ref": i,
    }
    return json.dumps(doc)


def make_row(rnd: random.Random, i: int) -> tuple[Any, ...]:
    created = _EPOCH + dt.timedelta(seconds=rnd.randint(0, 600 * 86400))
    updated = created + dt.timedelta(
        seconds=rnd.randint(0, 86400), microseconds=rnd.randint(0, 999999)
    )
    return (
        i,
        rnd.randint(1, 100_000),
        rnd.choice(STATUSES),
        Decimal(rnd.randint(100, 5_000_000)) / 100,
        _note(rnd),
        _attrs(rnd, i),
        updated,
        created,
    )


def rows(n: int, seed: int, first: int = 1) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    for i in range(first, first + n):
        yield make_row(rnd, i)


def create_and_load(conn: pymysql.connections.Connection, n: int, seed: int) -> None:
    """Create ``bench.orders`` (dropping an old one) and insert ``n`` rows in batches."""
    insert = f"INSERT INTO {SRC} VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
        cur.execute(f"DROP TABLE IF EXISTS {SRC}")
        cur.execute(DDL)
        batch: list[tuple[Any, ...]] = []
        for row in rows(n, seed):
            batch.append(row)
            if len(batch) == 2000:
                cur.executemany(insert, batch)
                batch.clear()
        if batch:
            cur.executemany(insert, batch)


def master_position(conn: pymysql.connections.Connection) -> tuple[str, int]:
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    assert row is not None, "binlog is off"
    return str(row[0]), int(row[1])


def alive_ids(conn: pymysql.connections.Connection) -> list[int]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {SRC}")
        return [int(r[0]) for r in cur.fetchall()]


class Churn:
    """Single-row change statements (insert, update, delete) on live keys, reproducibly.

    Every statement changes exactly one row, so it yields exactly one binlog row event.
    """

    def __init__(self, alive: Sequence[int], next_id: int, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.alive = list(alive)
        self.next_id = next_id
        self.counts = {"insert": 0, "update": 0, "delete": 0}
        self._insert = f"INSERT INTO {SRC} VALUES ({', '.join(['%s'] * len(COLUMNS))})"

    def _pick(self) -> int:
        return self.alive[self.rnd.randrange(len(self.alive))]

    def statement(self, mix: tuple[float, float] = (0.3, 0.5)) -> tuple[str, tuple[Any, ...]]:
        """Next statement; ``mix`` = (insert share, update share), the rest deletes."""
        r = self.rnd.random()
        if r < mix[0] or len(self.alive) < 100:
            i = self.next_id
            self.next_id += 1
            self.alive.append(i)
            self.counts["insert"] += 1
            row = make_row(self.rnd, i)
            return self._insert, row
        if r < mix[0] + mix[1]:
            i = self._pick()
            self.counts["update"] += 1
            n = self.counts["update"]
            return (
                f"UPDATE {SRC} SET amount = amount + 1, status = %s, note = %s, "
                "updated_at = NOW(6) WHERE id = %s",
                (self.rnd.choice(STATUSES), f"update {n} " + self.rnd.choice(_WORDS), i),
            )
        k = self.rnd.randrange(len(self.alive))
        i = self.alive[k]
        self.alive[k] = self.alive[-1]
        self.alive.pop()
        self.counts["delete"] += 1
        return f"DELETE FROM {SRC} WHERE id = %s", (i,)


# ---------------------------------------------------------------------------- comparisons

# Order-independent fingerprints; both sides give the same integers for the same rows.
_SRC_PRINT = f"""
SELECT COUNT(*), COALESCE(SUM(id), 0), COALESCE(SUM(customer_id), 0),
       COALESCE(SUM(amount * 100), 0),
       COALESCE(SUM(CONV(SUBSTR(MD5(CONCAT(COALESCE(note, ''), '|', status)), 1, 8), 16, 10)), 0),
       COALESCE(SUM(UNIX_TIMESTAMP(updated_at) * 1000000), 0)
FROM {SRC}
"""
_DST_PRINT = f"""
SELECT COUNT(*), COALESCE(SUM(id), 0), COALESCE(SUM(customer_id), 0),
       COALESCE(SUM(amount * 100), 0),
       COALESCE(SUM(('x' || SUBSTR(MD5(COALESCE(note, '') || '|' || status), 1, 8))
                    ::bit(32)::bigint), 0),
       COALESCE(SUM(EXTRACT(EPOCH FROM updated_at) * 1000000), 0)
FROM "{TABLE}"
"""


def source_print(conn: pymysql.connections.Connection) -> tuple[int, ...]:
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        cur.execute(_SRC_PRINT)
        row = cur.fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def target_exists(pg: psycopg.Connection[Any]) -> bool:
    row = pg.execute("SELECT to_regclass(%s)", (f'"{TABLE}"',)).fetchone()
    return row is not None and row[0] is not None


def target_print(pg: psycopg.Connection[Any]) -> tuple[int, ...] | None:
    if not target_exists(pg):
        return None
    row = pg.execute(_DST_PRINT).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def target_count(pg: psycopg.Connection[Any]) -> int:
    if not target_exists(pg):
        return 0
    row = pg.execute(f'SELECT COUNT(*) FROM "{TABLE}"').fetchone()
    return int(row[0]) if row else 0
