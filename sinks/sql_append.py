"""Mode append: a change-log table per source table, one row per source change.

The change-log table (default name ``<table>_changes``) has every source column plus

- ``_sluice_op``: ``c``, ``u``, ``d``, ``r`` (snapshot read) or ``t`` (truncate);
- ``_sluice_pos``: the change's source position;
- ``_sluice_key``: SHA-256 of the row key (``*`` for a truncate) and ``_sluice_copy``: how many
  changes before it in its message have the same position and key (0 but for identical rows of a
  keyless table read by one snapshot);
- ``_sluice_ts``: the source event time (``source.ts_ms``, UTC), NULL when the event has none.

The primary key is (``_sluice_pos``, ``_sluice_key``, ``_sluice_copy``): the position alone is
not unique (every row a snapshot reads carries the snapshot's position, and an update that
changes a key is a ``d`` and a ``c`` at one position), the position with the row key is. A
redelivered change meets its own row and is dropped (``ON CONFLICT DO NOTHING``; on MySQL and
MariaDB ``ON DUPLICATE KEY UPDATE`` of the position to itself, since ``INSERT IGNORE`` would also
turn a value that does not fit into a warning).

Inserts, updates and snapshot reads write the row after the change; a delete writes the row
before it (its key columns only if the event has no before image). A truncate writes one row with
op ``t`` and no values, and deletes nothing. A schema change adds columns and widens types as in
mode upsert (sinks/sql_migrate.py); a dropped or renamed table leaves its change log as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from sinks.sql_types import MYSQL_DIALECTS

if TYPE_CHECKING:
    from sinks.sql import SqlTarget, _Target


def row(target: _Target, ev: dict[str, Any], copy: int) -> dict[str, Any]:
    """The change-log row of one change event."""
    from sinks.sql import (
        COPY_COLUMN,
        KEY_COLUMN,
        OP_COLUMN,
        POS_COLUMN,
        TABLE_KEY,
        TS_COLUMN,
        _key_hash,
    )

    op = ev["op"]
    if op == "t":
        values: dict[str, Any] = {}
        row_key = TABLE_KEY
    else:
        image = ev.get("before") or ev.get("key") if op == "d" else ev.get("after")
        values = {
            name: (None if v is None else target.decoders[name](v))
            for name, v in (image or {}).items()
            if name in target.decoders
        }
        row_key = orjson.dumps([(ev.get("key") or {}).get(c) for c in target.key_columns]).decode()
    ts_ms = (ev.get("source") or {}).get("ts_ms")
    ts = None
    if ts_ms is not None:
        ts = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).replace(tzinfo=None)
    return {
        **{c: None for c in target.decoders},
        **values,
        OP_COLUMN: op,
        POS_COLUMN: ev["pos"],
        KEY_COLUMN: _key_hash(row_key),
        COPY_COLUMN: copy,
        TS_COLUMN: ts,
    }


def insert(
    sink: SqlTarget, conn: sa.Connection, rows: Sequence[tuple[_Target, dict[str, Any]]]
) -> int:
    """Insert the change-log rows, each one only if it is not there yet; how many were new."""
    from sinks.sql import POS_COLUMN

    by_table: dict[int, tuple[sa.Table, list[dict[str, Any]]]] = {}
    for target, one in rows:
        by_table.setdefault(id(target.table), (target.table, []))[1].append(one)
    written = 0
    for table, values in by_table.values():
        stmt: Any
        if sink.dialect in MYSQL_DIALECTS:
            ins = mysql.insert(table)
            stmt = ins.on_duplicate_key_update({POS_COLUMN: table.c[POS_COLUMN]})
        else:
            dialect_insert = postgresql.insert if sink.dialect == "postgresql" else sqlite.insert
            stmt = dialect_insert(table).on_conflict_do_nothing()
        for i in range(0, len(values), 1000):
            conn.execute(stmt, values[i : i + 1000])
        written += len(values)
    return written
