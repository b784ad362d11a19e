"""Lock-free chunked snapshot for any server (MySQL 8 first): low/high binlog watermarks.

Per chunk: L = binlog end (the previous chunk's H: windows are contiguous); SELECT the chunk
(autocommit, no long transaction); H = binlog end; read the table's row events in (L, H] and
apply them to the rows read, which gives the chunk's rows as they were at H; those rows carry
position H. Nothing is written to the source and no
lock is taken. The proof sketch is in docs/ARCHITECTURE.md ("Watermark snapshot").

Reconciliation is keyed by the *normalised* key (sources/values.py), the identity the whole
pipeline uses, so a snapshot value and a binlog value of one row always match. Range filtering
(keep only changes whose key falls in the chunk's range) is an optimisation, not a condition of
correctness: a change's after image is the row's state at H when it is the key's last change
in the window, whatever chunk the key belongs to. So keys are compared in Python only where
Python orders them exactly as the server does (integers, decimals, dates and times); other
keys (strings under a collation, ENUM, binary padding) keep every change of the window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pymysql
import pymysql.cursors
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from app.errors import SourceConfigError, TransientError
from sources.binlog import RowChange, _row_changes, connection_settings
from sources.mysql import SourceAddress
from sources.position import BinlogPosition, binlog_file_seq
from sources.schema import TableSchema
from sources.snapshot import (
    Normaliser,
    SnapshotChunk,
    decode_key_value,
    encode_key_value,
    quote_ident,
)

logger = logging.getLogger(__name__)

# At least this long between reading L and the SELECT. A commit is written to the binlog before
# the storage engine makes it visible, so a transaction that ends before L may still be invisible
# for the length of a group commit; waiting lets it become visible before the read (assumption A
# of the proof). L is the previous chunk's H, so the previous chunk's work usually covers it.
LOW_MARK_SETTLE_S = 0.1

# A window's binlog dump is read again while it ends short of H (at most ~5 s).
WINDOW_ATTEMPTS = 100
WINDOW_RETRY_S = 0.05

# Key types Python orders exactly as MySQL does, for values from PyMySQL and the binlog alike.
_ORDERED_TYPES = frozenset(
    {"tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "year", "date", "datetime",
     "timestamp"}
)  # fmt: skip


def binlog_end(conn: pymysql.connections.Connection) -> BinlogPosition:
    """The end of the server's binlog (always a transaction boundary)."""
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        try:
            cur.execute("SHOW MASTER STATUS")
        except pymysql.err.ProgrammingError:  # MySQL 8.4 removed it
            cur.execute("SHOW BINARY LOG STATUS")
        row = cur.fetchone()
    if not row:
        raise SourceConfigError("the server shows no binlog status: is log_bin on?")
    return BinlogPosition.at(row[0], int(row[1]))


def _mark(pos: BinlogPosition) -> tuple[int, int]:
    return pos.file_seq, pos.pos


class KeyRange:
    """A chunk's key range (lower, upper] in raw key values; None is unbounded."""

    def __init__(
        self, schema: TableSchema, lower: list[Any] | None, upper: list[Any] | None
    ) -> None:
        by_name = {c.name: c for c in schema.columns}
        self.key = schema.primary_key
        self.ordered = bool(self.key) and all(
            by_name[c].data_type in _ORDERED_TYPES for c in self.key
        )
        self.lower = tuple(lower) if lower is not None else None
        self.upper = tuple(upper) if upper is not None else None

    def may_hold(self, row: dict[str, Any]) -> bool:
        """False only for a row that certainly lies outside the range."""
        if not self.ordered:
            return True
        key = tuple(row.get(c) for c in self.key)
        try:
            if self.lower is not None and not key > self.lower:
                return False
            return self.upper is None or key <= self.upper
        except TypeError:  # a NULL or zero date, or a bound decoded from JSON: keep it
            return True


class Reconciler:
    """The rows of one chunk, brought forward by the binlog changes of its window."""

    def __init__(self, schema: TableSchema, normalise: Normaliser, keys: KeyRange) -> None:
        self._normalise = normalise
        self._key_columns = schema.key_columns
        self._keys = keys
        # Normalised key → rows holding it (several only for a table without a primary key,
        # whose "key" is the whole row).
        self._rows: dict[bytes, list[dict[str, Any]]] = {}
        self.applied = 0

    def _id(self, row: dict[str, Any]) -> bytes:
        return orjson.dumps([row.get(c) for c in self._key_columns])

    def add_read(self, raw: dict[str, Any]) -> None:
        row = self._normalise(raw)
        self._rows.setdefault(self._id(row), []).append(row)

    def apply(self, change: RowChange) -> None:
        hit = False
        if change.before is not None and self._keys.may_hold(change.before):
            hit = True
            found = self._rows.get(self._id(self._normalise(change.before)))
            if found:
                found.pop()
        if change.after is not None and self._keys.may_hold(change.after):
            hit = True
            row = self._normalise(change.after)
            held = self._rows.setdefault(self._id(row), [])
            if self._keys.key:
                held.clear()  # a primary key holds one row: the after image replaces it
            held.append(row)
        self.applied += hit

    def rows(self) -> list[dict[str, Any]]:
        return [r for held in self._rows.values() for r in held]


class WatermarkSnapshot:
    """Reads tables chunk by chunk, each at its own high watermark; holds no transaction."""

    method = "watermark"

    def __init__(
        self,
        address: SourceAddress,
        server_id: int,
        on_selected: Callable[[], None] | None = None,
    ) -> None:
        self._address = address
        self._server_id = server_id
        # Testing seam: runs between a chunk's SELECT and its high watermark.
        self._on_selected = on_selected
        self._conn = address.connect(cursorclass=pymysql.cursors.DictCursor)
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
        self.position = binlog_end(self._conn)
        # The next chunk's low mark and when it was read. Windows are contiguous: a chunk's low
        # mark is the high mark of the chunk before, whose processing is the settle time.
        self._low = (self.position, time.monotonic())

    def read(
        self, schema: TableSchema, chunk_rows: int, after: list[Any] | None, normalise: Normaliser
    ) -> Iterator[SnapshotChunk]:
        """Chunks in primary-key order after key ``after``; the last one is open-ended, so
        keys inserted beyond the end of the table are read (or reconciled) by it.

        A table without a primary key is one chunk (it cannot be split, nor resumed inside).
        """
        cols = ", ".join(quote_ident(c) for c in schema.column_names)
        table = f"{quote_ident(schema.database)}.{quote_ident(schema.table)}"
        pk = schema.primary_key
        key_cols = ", ".join(quote_ident(c) for c in pk)
        holes = ", ".join(["%s"] * len(pk))
        lower = [decode_key_value(v) for v in after] if after is not None else None
        while True:
            low, low_read_at = self._low
            time.sleep(max(0.0, LOW_MARK_SETTLE_S - (time.monotonic() - low_read_at)))
            with self._conn.cursor() as cur:
                if not pk:
                    cur.execute(f"SELECT {cols} FROM {table}")
                else:
                    where = f"WHERE ({key_cols}) > ({holes}) " if lower is not None else ""
                    cur.execute(
                        f"SELECT {cols} FROM {table} {where}ORDER BY {key_cols} LIMIT {chunk_rows}",
                        lower or (),
                    )
                read = list(cur.fetchall())
            if self._on_selected is not None:
                self._on_selected()
            high = binlog_end(self._conn)
            self._low = (high, time.monotonic())
            last = not pk or len(read) < chunk_rows
            upper = None if last else [read[-1][c] for c in pk]
            rec = Reconciler(schema, normalise, KeyRange(schema, lower, upper))
            for raw in read:
                rec.add_read(raw)
            for change in self.window(schema, low, high):
                rec.apply(change)
            end = [encode_key_value(v) for v in upper] if upper is not None else None
            yield SnapshotChunk(rec.rows(), high, end, last, rec.applied)
            if last:
                return
            lower = upper

    def window(
        self, schema: TableSchema, low: BinlogPosition, high: BinlogPosition
    ) -> list[RowChange]:
        """The table's row changes committed in (low, high], in binlog order.

        The binlog status can name a position a dump cannot read yet (MySQL shows what is
        written; its dump threads stop at what is synced): a window that ends short of ``high``
        is read again.
        """
        if _mark(high) <= _mark(low):
            return []
        for _ in range(WINDOW_ATTEMPTS):
            changes, complete = self._read_window(schema, low, high)
            if complete:
                return changes
            time.sleep(WINDOW_RETRY_S)
        raise TransientError(f"the binlog dump did not reach {high} (from {low})")

    def _read_window(
        self, schema: TableSchema, low: BinlogPosition, high: BinlogPosition
    ) -> tuple[list[RowChange], bool]:
        a = self._address
        stream = BinLogStreamReader(
            connection_settings=connection_settings(a.host, a.port, a.user, a.password),
            server_id=self._server_id,
            resume_stream=True,
            log_file=low.file,
            log_pos=low.pos,
            blocking=False,  # the dump ends at the binlog's end
            is_mariadb=False,  # file/position mode (MariaDB GTID mode ignores log_file/log_pos)
            only_events=[TableMapEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
            only_schemas=[schema.database],
            only_tables=[schema.table],
            enable_logging=False,
        )
        stop = _mark(high)
        changes: list[RowChange] = []
        try:
            for ev in stream:
                # H is read under the binlog lock, so it never falls inside a transaction: an
                # event ending at or before H belongs to a transaction committed by H.
                if (binlog_file_seq(stream.log_file), ev.packet.log_pos) > stop:
                    return changes, True
                if isinstance(ev, TableMapEvent):
                    continue
                if ev.schema == schema.database and ev.table == schema.table:
                    changes.extend(_row_changes(ev, None))
            # The dump's position follows every event, filtered or not.
            return changes, (binlog_file_seq(stream.log_file), stream.log_pos) >= stop
        finally:
            stream.close()

    def close(self) -> None:
        self._conn.close()
