"""Consistent, chunked, resumable snapshot of existing rows (MariaDB method), and the choice
between it and the watermark method (sources/watermark_snapshot.py) for any server.

``START TRANSACTION WITH CONSISTENT SNAPSHOT`` gives a read view and, on MariaDB, the
``binlog_snapshot_file/position`` status variables name the binlog point that view equals, with
no lock held. Rows are read in primary-key order, one chunk at a time (keyset pagination), and
every row is tagged with the position of the snapshot that read it.

Resuming after a crash takes a *new* snapshot (the old read view died with its connection) and
continues after the last committed chunk, while streaming still starts at the *first* snapshot's
position. That is correct because writes are versioned by position: a row read by the later
snapshot at P2 carries P2, so the replayed binlog changes between P1 and P2 cannot overwrite it,
and rows read at P1 receive every change after P1 from the stream. Nothing is lost or doubled.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pymysql
import pymysql.cursors

from app.errors import SourceConfigError
from sources.mysql import SourceAddress
from sources.position import BinlogPosition
from sources.schema import TableSchema

Normaliser = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class SnapshotChunk:
    """The rows of one chunk of a table, as they were at ``position`` (normalised)."""

    rows: list[dict[str, Any]]
    position: BinlogPosition
    # The key the chunk's SELECT ended at (encoded, ``encode_key_value``): where the next chunk
    # starts. None for a table without a primary key.
    after: list[Any] | None
    last: bool  # the table's final chunk: nothing of the table is left to read
    reconciled: int = 0  # binlog row changes applied to the rows read (watermark method)


class SnapshotReader(Protocol):
    method: str
    # Consistent: the read view's position. Watermark: the binlog end when it opened (where a
    # snapshot that reads no chunk at all hands off to streaming).
    position: BinlogPosition

    def read(
        self, schema: TableSchema, chunk_rows: int, after: list[Any] | None, normalise: Normaliser
    ) -> Iterator[SnapshotChunk]: ...

    def close(self) -> None: ...


def has_snapshot_status(conn: pymysql.connections.Connection) -> bool:
    """Whether the server names the binlog position of a consistent read view (MariaDB)."""
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_file'")
        row = cur.fetchone()
    return bool(row and row[1])


def open_snapshot(
    address: SourceAddress,
    method: Literal["auto", "consistent", "watermark"],
    server_id: int,
) -> SnapshotReader:
    """A snapshot reader of the configured method (auto: consistent where the server can)."""
    if method == "auto":
        conn = address.connect()
        try:
            method = "consistent" if has_snapshot_status(conn) else "watermark"
        finally:
            conn.close()
    if method == "consistent":
        return ConsistentSnapshot(address)
    from sources.watermark_snapshot import WatermarkSnapshot  # it imports this module

    return WatermarkSnapshot(address, server_id)


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def encode_key_value(v: Any) -> Any:
    """A primary-key value as JSON that ``decode_key_value`` turns back into a query parameter."""
    if isinstance(v, bytes | bytearray):
        return {"b64": base64.b64encode(v).decode()}
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return {"t": v.isoformat()}
    if isinstance(v, dt.timedelta):
        return {"td": v.total_seconds()}
    if isinstance(v, decimal.Decimal):
        return {"d": str(v)}
    return v


def decode_key_value(v: Any) -> Any:
    if isinstance(v, dict):
        if "b64" in v:
            return base64.b64decode(v["b64"])
        if "td" in v:
            return dt.timedelta(seconds=v["td"])
        if "d" in v:
            return decimal.Decimal(v["d"])
        return v["t"]
    return v


class ConsistentSnapshot:
    """Holds one snapshot transaction open; read tables from it, then close it."""

    method = "consistent"

    def __init__(self, address: SourceAddress) -> None:
        self._conn = address.connect(cursorclass=pymysql.cursors.DictCursor)
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = {r["Variable_name"].lower(): r["Value"] for r in cur.fetchall()}
        file = status.get("binlog_snapshot_file")
        if not file:
            self.close()
            raise SourceConfigError(
                "this server has no binlog_snapshot_file status (MySQL rather than MariaDB): "
                "the consistent snapshot needs MariaDB; set snapshot_method: watermark (or auto) "
                "on the source"
            )
        self.position = BinlogPosition.at(file, int(status["binlog_snapshot_position"]))

    def chunks(
        self,
        schema: TableSchema,
        chunk_rows: int,
        after: list[Any] | None = None,
        key_from: list[Any] | None = None,
        key_to: list[Any] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Rows in primary-key order, ``chunk_rows`` at a time, starting after key ``after``,
        within the inclusive key bounds ``key_from`` and ``key_to`` (None: unbounded).

        A table without a primary key is read in one pass (it cannot be resumed in the middle,
        and key bounds do not apply to it).
        """
        cols = ", ".join(quote_ident(c) for c in schema.column_names)
        table = f"{quote_ident(schema.database)}.{quote_ident(schema.table)}"
        pk = schema.primary_key
        if not pk:
            with self._conn.cursor(pymysql.cursors.SSDictCursor) as cur:
                cur.execute(f"SELECT {cols} FROM {table}")
                while rows := cur.fetchmany(chunk_rows):
                    yield rows
            return
        key_cols = ", ".join(quote_ident(c) for c in pk)
        holes = ", ".join(["%s"] * len(pk))
        last = [decode_key_value(v) for v in after] if after is not None else None
        bounds: list[str] = []
        bound_args: list[Any] = []
        for op, bound in ((">=", key_from), ("<=", key_to)):
            if bound is not None:
                if len(bound) != len(pk):
                    raise ValueError(f"key bound {bound!r} does not match the key {pk}")
                bounds.append(f"({key_cols}) {op} ({holes})")
                bound_args.extend(decode_key_value(v) for v in bound)
        while True:
            conds = [f"({key_cols}) > ({holes})"] if last is not None else []
            where = " AND ".join(conds + bounds)
            where = f"WHERE {where} " if where else ""
            sql = f"SELECT {cols} FROM {table} {where}ORDER BY {key_cols} LIMIT {chunk_rows}"
            with self._conn.cursor() as cur:
                cur.execute(sql, [*(last or ()), *bound_args])
                rows = list(cur.fetchall())
            if not rows:
                return
            yield rows
            if len(rows) < chunk_rows:
                return
            last = [rows[-1][c] for c in pk]

    def read(
        self, schema: TableSchema, chunk_rows: int, after: list[Any] | None, normalise: Normaliser
    ) -> Iterator[SnapshotChunk]:
        """``chunks`` as normalised chunks at the read view's position."""
        pk = schema.primary_key
        for rows in self.chunks(schema, chunk_rows, after):
            end = [encode_key_value(rows[-1][c]) for c in pk] if pk else None
            yield SnapshotChunk(
                [normalise(r) for r in rows], self.position, end, len(rows) < chunk_rows
            )

    def close(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._conn.close()
