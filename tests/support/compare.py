"""Compare a source table with its target copy, value by value, in one canonical form."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pymysql
import sqlalchemy as sa


def canonical(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, decimal.Decimal):
        # SQLite keeps NUMERIC as a float: compare the value, not its trailing zeros.
        return format(v.normalize(), "f")
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None).isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes | memoryview):
        return bytes(v).hex()
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.dumps(json.loads(v), sort_keys=True)
        except ValueError:
            return v
    if isinstance(v, float):
        return repr(v)
    return str(v) if not isinstance(v, str) else v


def source_rows(
    conn: pymysql.connections.Connection, table: str, columns: Sequence[str]
) -> list[tuple[Any, ...]]:
    cols = ", ".join(f"`{c}`" for c in columns)
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        cur.execute(f"SELECT {cols} FROM {table} ORDER BY 1")
        return [tuple(canonical(v) for v in row) for row in cur.fetchall()]


def target_rows(url: str, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return []
            q = conn.dialect.identifier_preparer.quote
            cols = ", ".join(q(c) for c in columns)
            rows = conn.execute(sa.text(f"SELECT {cols} FROM {q(table)} ORDER BY 1"))
            return [tuple(canonical(v) for v in row) for row in rows]
    finally:
        engine.dispose()


def wait_until_equal(
    left: Callable[[], list[tuple[Any, ...]]],
    right: Callable[[], list[tuple[Any, ...]]],
    timeout: float = 90,
    on_timeout: Callable[[], str] = lambda: "",
) -> list[tuple[Any, ...]]:
    """Poll until both sides hold the same rows; fail with the difference otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        a, b = left(), right()
        if a == b:
            return a
        if time.monotonic() > deadline:
            only_a = sorted(set(a) - set(b))[:10]
            only_b = sorted(set(b) - set(a))[:10]
            raise AssertionError(
                f"not equal after {timeout}s: {len(a)} vs {len(b)} rows\n"
                f"only in source: {only_a}\nonly in target: {only_b}\n{on_timeout()}"
            )
        time.sleep(0.5)
