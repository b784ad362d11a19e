"""Table schemas as the source describes them: the model, and information_schema's account.

A binlog row is described by its own table map (sources/table_map.py), which produces the same
``data_type``/``column_type`` text as information_schema for every type sluice maps. This module's
information_schema reads serve the snapshot (which reads the tables as they are now) and the
schema history (sources/schema_history.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql

from app.pipeline import TableFilter

SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # lower-case base type: int, varchar, decimal, ...
    column_type: str  # full type: "int(10) unsigned", "decimal(12,2)", "enum('a','b')"
    nullable: bool = True

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type

    def to_json(self) -> list[Any]:
        return [self.name, self.data_type, self.column_type, self.nullable]

    @classmethod
    def from_json(cls, v: list[Any]) -> Column:
        return cls(v[0], v[1], v[2], bool(v[3]))


@dataclass(frozen=True)
class TableSchema:
    database: str
    table: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The columns that identify a row: the primary key, or the whole row without one."""
        return self.primary_key or self.column_names

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns], "pk": list(self.primary_key)}

    @classmethod
    def from_json(cls, database: str, table: str, d: dict[str, Any]) -> TableSchema:
        return cls(
            database,
            table,
            tuple(Column.from_json(c) for c in d["columns"]),
            tuple(d["pk"]),
        )


_COLUMNS_SQL = """
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE,
       c.COLUMN_KEY
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t
  ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE t.TABLE_TYPE = 'BASE TABLE'
ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION
"""

_PK_SQL = """
SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE
WHERE CONSTRAINT_NAME = 'PRIMARY'
ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION
"""

_ONE_COLUMNS_SQL = _COLUMNS_SQL.replace(
    "WHERE t.TABLE_TYPE = 'BASE TABLE'",
    "WHERE t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s",
)
_ONE_PK_SQL = _PK_SQL.replace(
    "WHERE CONSTRAINT_NAME = 'PRIMARY'",
    "WHERE CONSTRAINT_NAME = 'PRIMARY' AND TABLE_SCHEMA = %s AND TABLE_NAME = %s",
)


def load_schemas(
    conn: pymysql.connections.Connection, tables: TableFilter
) -> dict[tuple[str, str], TableSchema]:
    """Every base table the filter selects, keyed by (database, table)."""
    cols: dict[tuple[str, str], list[Column]] = {}
    with conn.cursor() as cur:
        cur.execute(_COLUMNS_SQL)
        for db, tbl, name, data_type, column_type, nullable, _key in cur.fetchall():
            if db in SYSTEM_SCHEMAS or not tables.matches(db, tbl):
                continue
            cols.setdefault((db, tbl), []).append(
                Column(name, data_type.lower(), column_type.lower(), nullable == "YES")
            )
        pks: dict[tuple[str, str], list[str]] = {}
        cur.execute(_PK_SQL)
        for db, tbl, name in cur.fetchall():
            if (db, tbl) in cols:
                pks.setdefault((db, tbl), []).append(name)
    return {k: TableSchema(k[0], k[1], tuple(v), tuple(pks.get(k, ()))) for k, v in cols.items()}


def load_schema(
    conn: pymysql.connections.Connection, database: str, table: str
) -> TableSchema | None:
    """One base table as information_schema shows it now; None if it does not exist."""
    with conn.cursor() as cur:
        cur.execute(_ONE_COLUMNS_SQL, (database, table))
        columns = tuple(
            Column(name, data_type.lower(), column_type.lower(), nullable == "YES")
            for _db, _tbl, name, data_type, column_type, nullable, _key in cur.fetchall()
        )
        if not columns:
            return None
        cur.execute(_ONE_PK_SQL, (database, table))
        pk = tuple(name for _db, _tbl, name in cur.fetchall())
    return TableSchema(database, table, columns, pk)
