"""Load generators and the target poller, each run in a process of its own (spawned), so their
Python work neither shares a GIL with the benchmark driver nor with each other.

Every loop is bounded by a duration or a deadline and by a stop event.
"""

from __future__ import annotations

import datetime as dt
import queue
import time
from typing import Any

import psycopg
import pymysql

from bench.dataset import SRC, TABLE, Churn, alive_ids

_UTC = dt.UTC


def _connect(kwargs: dict[str, Any]) -> pymysql.connections.Connection:
    conn = pymysql.connect(**kwargs, autocommit=True, charset="utf8mb4", connect_timeout=10)
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")  # NOW(6) in UTC, like the snapshot
    return conn


def _pace(t0: float, i: int, rate: float) -> None:
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def stamp_writer(
    mysql: dict[str, Any],
    ids: list[int],
    rate: float,
    duration: float,
    out: Any,
    stop: Any,
    result: Any,
) -> None:
    """``UPDATE … SET updated_at = NOW(6)`` on ``ids`` in turn at ``rate``/s for ``duration`` s.

    Each change is reported to ``out`` (if given) as (id, client time before the statement), in
    small lists, for the poller.
    """
    conn = _connect(mysql)
    sql = f"UPDATE {SRC} SET updated_at = NOW(6), amount = amount + 0.01 WHERE id = %s"
    sent = 0
    pending: list[tuple[int, float]] = []
    last_flush = time.monotonic()
    t0 = time.monotonic()
    try:
        with conn.cursor() as cur:
            while not stop.is_set() and time.monotonic() - t0 < duration:
                _pace(t0, sent, rate)
                i = ids[sent % len(ids)]
                before = time.time()
                cur.execute(sql, (i,))
                sent += 1
                if out is not None:
                    pending.append((i, before))
                    if time.monotonic() - last_flush > 0.01:
                        out.put(pending)
                        pending, last_flush = [], time.monotonic()
        if out is not None and pending:
            out.put(pending)
    finally:
        conn.close()
        elapsed = time.monotonic() - t0
        result.put({"sent": sent, "seconds": elapsed, "rate": sent / elapsed if elapsed else 0})


def visibility_poller(
    pg_dsn: str, inbox: Any, writer_done: Any, stop: Any, drain_s: float, result: Any
) -> None:
    """Polls the target for the changes announced on ``inbox``; records when each is visible.

    Latency = start of the first poll that sees the change minus the change's ``updated_at``
    (NOW(6) at the source, UTC). The poll interval (~5 ms) bounds the error.
    """
    pending: dict[int, float] = {}
    latencies: list[float] = []
    polls = 0
    done_at: float | None = None
    conn = psycopg.connect(pg_dsn, autocommit=True)
    sql = f'SELECT id, updated_at FROM "{TABLE}" WHERE updated_at >= %s'
    try:
        while not stop.is_set():
            try:
                while True:
                    for i, t in inbox.get_nowait():
                        pending[i] = t
            except queue.Empty:
                pass
            if writer_done.is_set():
                done_at = done_at or time.monotonic()
                if not pending or time.monotonic() - done_at > drain_s:
                    break
            if not pending:
                time.sleep(0.005)
                continue
            low = dt.datetime.fromtimestamp(min(pending.values()) - 0.002, _UTC)
            t_query = time.time()
            rows = conn.execute(sql, (low.replace(tzinfo=None),)).fetchall()
            polls += 1
            for i, updated in rows:
                t = pending.get(i)
                if t is None:
                    continue
                stamped = updated.replace(tzinfo=_UTC).timestamp()
                if stamped >= t - 0.002:
                    latencies.append(t_query - stamped)
                    del pending[i]
            time.sleep(0.005)
    finally:
        conn.close()
        result.put({"latencies": latencies, "missing": len(pending), "polls": polls})


def churn(
    mysql: dict[str, Any],
    rate: float,
    duration: float,
    seed: int,
    stop: Any,
    result: Any,
) -> None:
    """Mixed single-row inserts, updates and deletes at ``rate``/s (insert share = delete share,
    so the table keeps its size)."""
    conn = _connect(mysql)
    ids = alive_ids(conn)
    churner = Churn(ids, max(ids, default=0) + 1_000_000, seed)
    sent = 0
    t0 = time.monotonic()
    try:
        with conn.cursor() as cur:
            while not stop.is_set() and time.monotonic() - t0 < duration:
                _pace(t0, sent, rate)
                sql, args = churner.statement(mix=(0.25, 0.5))
                cur.execute(sql, args)
                sent += 1
    finally:
        conn.close()
        elapsed = time.monotonic() - t0
        result.put(
            {
                "sent": sent,
                "seconds": elapsed,
                "rate": sent / elapsed if elapsed else 0,
                **churner.counts,
            }
        )
