"""The limits of the parts, each in its plainest fast form, measured in the same run.

- SELECT: a streaming (unbuffered) cursor reading every column into Python tuples;
- binlog: a bare mysql-replication loop over the change backlog, row events only, values decoded;
- produce: a bare aiokafka producer (default batching) of records the size of the pipeline's
  per-row change events;
- COPY: PostgreSQL ``COPY FROM STDIN`` of the same rows through psycopg.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pymysql
import pymysql.cursors
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from bench.dataset import COLUMNS, SRC


def select_rows(mysql: dict[str, Any]) -> tuple[list[tuple[Any, ...]], float]:
    """All rows through an unbuffered cursor; returns them and rows/s."""
    conn = pymysql.connect(**mysql, charset="utf8mb4", cursorclass=pymysql.cursors.SSCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            t0 = time.perf_counter()
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {SRC}")
            out: list[tuple[Any, ...]] = []
            while chunk := cur.fetchmany(10_000):
                out.extend(chunk)
            elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return out, len(out) / elapsed


def copy_rows(pg_dsn: str, rows: list[tuple[Any, ...]]) -> float:
    """COPY the rows into a scratch table of the target's column types; returns rows/s."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS _bench_copy")
        conn.execute(
            "CREATE TABLE _bench_copy (id BIGINT PRIMARY KEY, customer_id INTEGER, status TEXT,"
            " amount NUMERIC(12,2), note VARCHAR(200), attrs JSON, updated_at TIMESTAMP,"
            " created_at TIMESTAMP)"
        )
        try:
            t0 = time.perf_counter()
            sql = f"COPY _bench_copy ({', '.join(COLUMNS)}) FROM STDIN"
            with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
            elapsed = time.perf_counter() - t0
        finally:
            conn.execute("DROP TABLE IF EXISTS _bench_copy")
    return len(rows) / elapsed


def _json_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v


def change_events(rows: list[tuple[Any, ...]]) -> list[tuple[bytes, bytes]]:
    """(key, value) of each row as the pipeline encodes one snapshot change event."""
    out = []
    for row in rows:
        after = {c: _json_value(v) for c, v in zip(COLUMNS, row, strict=True)}
        event = {
            "op": "r",
            "key": {"id": row[0]},
            "before": None,
            "after": after,
            "pos": "000000010000012345670000000000",
            "source": {
                "server_id": 4242,
                "file": "binlog.000001",
                "pos": 1234567,
                "row": 0,
                "ts_ms": 1700000000000,
                "snapshot": True,
            },
        }
        out.append((orjson.dumps([row[0]]), orjson.dumps(event)))
    return out


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # Warm up: metadata and connections.
        await (await producer.send(topic, records[0][1], key=records[0][0]))
        t0 = time.perf_counter()
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - t0)
    finally:
        await producer.stop()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    return asyncio.run(asyncio.wait_for(_produce(bootstrap, topic, records), timeout=600))


def binlog_rows(
    mysql: dict[str, Any], server_id: int, start: tuple[str, int], end: tuple[str, int]
) -> tuple[int, float]:
    """Read the binlog from ``start`` to ``end``: row events only, every value decoded."""

    def seq(pos: tuple[str, int]) -> tuple[int, int]:
        return int(pos[0].rsplit(".", 1)[1]), pos[1]

    settings = {
        "host": mysql["host"],
        "port": mysql["port"],
        "user": mysql["user"],
        "passwd": mysql["password"],
        "read_timeout": 30,
        "connect_timeout": 10,
    }
    stream = BinLogStreamReader(
        connection_settings=settings,
        server_id=server_id,
        resume_stream=True,
        log_file=start[0],
        log_pos=start[1],
        blocking=False,
        is_mariadb=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        enable_logging=False,
    )
    n = 0
    stop_at = seq(end)
    t0 = time.perf_counter()
    try:
        for ev in stream:
            n += len(ev.rows)  # decodes every value of every row
            if seq((stream.log_file, stream.log_pos)) >= stop_at:
                break
    finally:
        stream.close()
    return n, n / (time.perf_counter() - t0)
