"""Binlog rows and DDL from a position, grouped into source transactions.

The reader is synchronous (pymysqlreplication over PyMySQL), so it runs in a thread of its own
and hands transactions to a callback: whole, or in parts of at most ``max_items`` items
(sources/txn_parts.py). The position handed out with a whole transaction (or its last part) is
the end of its commit (XID event, or a ``COMMIT`` statement for non-transactional engines and
``CREATE TABLE … SELECT``), or of a standalone DDL statement: where a restarted reader resumes.
A part before the last says where its transaction starts, so a restarted reader can go back
there and skip what was committed.

Every row carries the schema of its own TABLE_MAP event (sources/table_map.py), so a row is
described as it was written, not as the table is now. A DDL statement inside a transaction (the
``CREATE`` of ``CREATE TABLE … SELECT``) stays in that transaction, in order with its rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import NONE_SOURCE
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)
from pymysqlreplication.table import Table

from sources.position import BinlogPosition
from sources.schema import TableSchema
from sources.table_map import table_map_schema
from sources.txn_parts import RowChange, SourceTransaction, Statement, TransactionParts

__all__ = ["BinlogReader", "RowChange", "SourceTransaction", "Statement", "connection_settings"]

logger = logging.getLogger(__name__)

# Events that can be the first of a transaction (MariaDB: its GTID event; MySQL: BEGIN).
_OPENING = (MariadbGtidEvent, QueryEvent, TableMapEvent, WriteRowsEvent, UpdateRowsEvent,
            DeleteRowsEvent)  # fmt: skip

_TXN_BEGIN = frozenset({"BEGIN", "XA START", "START TRANSACTION"})
_TXN_END = frozenset({"COMMIT", "ROLLBACK"})
_MARIADB_GTID_STANDALONE = 0x01  # FL_STANDALONE: the group is one statement, no BEGIN/COMMIT


def _table_init(
    self: Any,
    table_id: int,
    schema: str,
    table: str,
    columns: list[Any],
    primary_key: Any = None,
    column_name_flag: bool = False,
) -> None:
    """pymysqlreplication's ``Table.__init__``, reading each column's name and key flag as
    attributes. The library builds a dict of every column's attributes twice per column to read
    them (``Column.data``), on every table map, which MariaDB writes before every statement:
    ~9% of the reader's time on a 8-column table. Same result."""
    if primary_key is None:
        names = [c.name for c in columns if c.is_primary]
        primary_key = "" if not names else names[0] if len(names) == 1 else tuple(names)
    self.__dict__.update(
        {
            "table_id": table_id,
            "schema": schema,
            "table": table,
            "columns": columns,
            "primary_key": primary_key,
            "column_name_flag": column_name_flag,
        }
    )


Table.__init__ = _table_init


def connection_settings(host: str, port: int, user: str, password: str) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "user": user,
        "passwd": password,
        # A dead TCP connection must surface as an error instead of a hang.
        "read_timeout": 30,
        "connect_timeout": 10,
    }


class BinlogReader:
    """Reads the binlog from ``start`` and calls ``emit`` once per source transaction, or per
    part of one with more than ``max_items`` items.

    ``start`` with ``row = n`` is the first event of a split transaction whose first n items
    were committed: they are read again and dropped.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        server_id: int,
        start: BinlogPosition,
        wants: Callable[[str, str], bool],
        max_items: int = 20_000,
    ) -> None:
        self._settings = settings
        self._server_id = server_id
        self._start = start
        self._filter = wants
        self._wanted: dict[tuple[str, str], bool] = {}
        self._max_items = max_items
        self._stop = threading.Event()
        # Table id → schema of its table map, for the rows of the current transaction. Schemas
        # are interned per table, so an unchanged shape is the same object from one transaction
        # to the next; and cached by the table map's bytes, which MariaDB repeats before every
        # statement (deriving a schema costs ~40 µs for 10 columns, a lookup ~1 µs).
        self._maps: dict[int, TableSchema | None] = {}
        self._interned: dict[tuple[str, str], TableSchema] = {}
        self._by_body: dict[bytes, TableSchema | None] = {}

    def stop(self) -> None:
        self._stop.set()

    def _wants(self, database: str, table: str) -> bool:
        """The filter's answer, remembered: asked for every row event and table map."""
        key = (database, table)
        found = self._wanted.get(key)
        if found is None:
            if len(self._wanted) >= 65536:
                self._wanted.clear()
            found = self._wanted[key] = self._filter(database, table)
        return found

    def _on_table_map(self, ev: Any) -> None:
        body = _table_map_body(ev)
        if body is not None and body in self._by_body:
            self._maps[ev.table_id] = self._by_body[body]
            return
        schema = table_map_schema(ev) if self._wants(ev.schema, ev.table) else None
        if schema is not None:
            key = (schema.database, schema.table)
            known = self._interned.get(key)
            if known == schema:
                schema = known
            else:
                self._interned[key] = schema
        self._maps[ev.table_id] = schema
        if body is not None:
            if len(self._by_body) >= 4096:
                self._by_body.clear()
            self._by_body[body] = schema

    def run(self, emit: Callable[[SourceTransaction], None]) -> None:
        stream = BinLogStreamReader(
            connection_settings=self._settings,
            server_id=self._server_id,
            # File/position mode: with resume_stream the library's own reconnect resumes where
            # it was, unlike MariaDB GTID mode which replays from the first GTID.
            resume_stream=True,
            log_file=self._start.file,
            log_pos=self._start.pos,
            blocking=True,
            is_mariadb=False,
            only_events=[
                TableMapEvent,
                WriteRowsEvent,
                UpdateRowsEvent,
                DeleteRowsEvent,
                XidEvent,
                QueryEvent,
                MariadbGtidEvent,
                GtidEvent,
                HeartbeatLogEvent,
            ],
            # Heartbeats wake the loop while the source is idle, so stop() is honoured.
            slave_heartbeat=1,
            enable_logging=False,
        )
        parts = TransactionParts(self._max_items, emit, self._start)
        in_txn = False
        mysql_gtid: str | None = None  # MySQL's GTID event comes before the transaction opens

        def end(ev: Any) -> None:
            nonlocal in_txn
            parts.end(BinlogPosition.at(stream.log_file, stream.log_pos), ev.timestamp * 1000)
            in_txn = False
            self._maps.clear()  # every row event follows its table map in its own transaction

        try:
            for ev in stream:
                if self._stop.is_set():
                    return
                if not parts.open and isinstance(ev, _OPENING):
                    # The event that opens a transaction: the restart point before it, and
                    # the anchor of a split transaction's items after it.
                    after = ev.packet.log_pos
                    parts.begin(
                        BinlogPosition.at(stream.log_file, after - ev.packet.event_size),
                        BinlogPosition.at(stream.log_file, after),
                    )
                    parts.gtid, mysql_gtid = mysql_gtid, None
                if isinstance(ev, TableMapEvent):
                    self._on_table_map(ev)
                elif isinstance(ev, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                    if self._wants(ev.schema, ev.table):
                        ts_ms = ev.timestamp * 1000
                        for change in _row_changes(ev, self._maps.get(ev.table_id)):
                            parts.add(change, ts_ms)
                elif isinstance(ev, XidEvent):
                    end(ev)
                elif isinstance(ev, MariadbGtidEvent):
                    # A group without FL_STANDALONE ends with an XID or a COMMIT statement.
                    in_txn = not ev.flags & _MARIADB_GTID_STANDALONE
                    parts.gtid = ev.gtid
                elif isinstance(ev, GtidEvent):
                    mysql_gtid = ev.gtid
                elif isinstance(ev, QueryEvent):
                    sql = ev.query.strip()
                    word = sql.upper()
                    if word in _TXN_BEGIN:
                        in_txn = True
                        continue
                    if word in _TXN_END:
                        end(ev)  # rows of a non-transactional table, CREATE … SELECT
                        continue
                    db = ev.schema.decode() if isinstance(ev.schema, bytes) else ev.schema
                    parts.add(Statement(sql, db or None), ev.timestamp * 1000)
                    if not in_txn:
                        end(ev)  # a standalone statement: DDL, or DML run as a statement
        finally:
            stream.close()


def _table_map_body(ev: Any) -> bytes | None:
    """A table map event without its header (time, position) and checksum: the same bytes for
    the same table id and definition. pymysqlreplication itself assumes the CRC32 checksum when
    it reads the optional metadata."""
    try:
        data = ev.packet.packet.get_all_data()
    except AttributeError:
        return None
    return bytes(data[20:-4])


def _with_empty_sets(values: dict[str, Any], none_sources: dict[str, str]) -> dict[str, Any]:
    """The library decodes an empty SET as None and says so in ``none_sources``: restore it."""
    for name, why in none_sources.items():
        if why == NONE_SOURCE.EMPTY_SET:
            values[name] = set()
    return values


def _row_changes(ev: Any, schema: TableSchema | None) -> list[RowChange]:
    db, table = ev.schema, ev.table
    if isinstance(ev, WriteRowsEvent):
        return [
            RowChange(
                db, table, "c", None, _with_empty_sets(r["values"], r["none_sources"]), schema
            )
            for r in ev.rows
        ]
    if isinstance(ev, DeleteRowsEvent):
        return [
            RowChange(
                db, table, "d", _with_empty_sets(r["values"], r["none_sources"]), None, schema
            )
            for r in ev.rows
        ]
    return [
        RowChange(
            db,
            table,
            "u",
            _with_empty_sets(r["before_values"], r["before_none_sources"]),
            _with_empty_sets(r["after_values"], r["after_none_sources"]),
            schema,
        )
        for r in ev.rows
    ]
