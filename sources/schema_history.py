"""What the source said about each table's shape, keyed by binlog position.

Rows are described by their own table map (sources/table_map.py); that is the truth for every
row, however far the reader lags. This history fills only what a table map cannot carry
(declared integer widths, ZEROFILL, FLOAT(M,D), ENUM/SET values in a non-UTF-8 character set,
geometry subtypes) and gives a schema where no row has been seen yet: for a schema-change
record with no row after it, a TRUNCATE, a DROP.

It holds, per table, versions ``(from position, schema or None when dropped)``: the
information_schema read when the job starts (valid from the stream's start), and for every DDL
statement on a captured table a new version at the statement's position, read from
information_schema when the statement is seen.

The risk, accepted on purpose: information_schema describes the table *now*, not at the
position. While the reader lags, a version may show a later shape. That never reaches a row:
:func:`refine` borrows a detail only for a column whose name and binlog-visible shape are the
same in both, so a later rename, retype, resize or drop is simply not borrowed. What can be
wrong is an invisible detail changed between the position and now (``int(5)`` → ``int(8)``),
and the schema of a schema-change record published before any row of the new shape was seen
(then the next row's own schema follows it, and the sink evolves by every batch's schema).
The history is kept in memory and rebuilt at every start; nothing of it is persisted.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from sources.schema import Column, TableSchema

_INT_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")
_REAL_ARGS = re.compile(r"^(float|double|real)\(\d+(?:,\d+)?\)")
_GEOMETRY = frozenset(
    {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
     "multipolygon", "geometrycollection"}
)  # fmt: skip
_MEMBER = re.compile(r"'((?:[^'\\]|''|\\.)*)'")


def shape(column_type: str) -> str:
    """A column type without the details a table map cannot carry."""
    t = column_type.lower().replace(" zerofill", "")
    t = _INT_WIDTH.sub(r"\1", t)
    t = _REAL_ARGS.sub(r"\1", t)
    return "year" if t == "year(4)" else t


def _members(column_type: str) -> list[str]:
    return _MEMBER.findall(column_type)


def _same_shape(derived: Column, known: Column) -> bool:
    if derived.name != known.name:
        return False
    if derived.data_type == "geometry" and known.data_type in _GEOMETRY:
        return True
    if derived.data_type != known.data_type:
        return False
    if derived.data_type in ("enum", "set"):
        ours, theirs = _members(derived.column_type), _members(known.column_type)
        # Members pymysqlreplication could not decode come as '': only those may differ.
        if len(ours) != len(theirs):
            return False
        return all(a in ("", b) for a, b in zip(ours, theirs, strict=True))
    return shape(derived.column_type) == shape(known.column_type)


def refine(derived: TableSchema, known: TableSchema | None) -> TableSchema:
    """``derived`` (from a table map) with the declared type text of ``known`` where they agree.

    Names, order, nullability and the primary key always stay the table map's; an unknown type
    (a code this module does not map) takes the known column of the same name, if any.
    """
    if known is None:
        return derived
    by_name = {c.name: c for c in known.columns}
    columns: list[Column] = []
    changed = False
    for c in derived.columns:
        k = by_name.get(c.name)
        if k is None or (c.data_type != "unknown" and not _same_shape(c, k)):
            columns.append(c)
            continue
        if (k.data_type, k.column_type) != (c.data_type, c.column_type):
            c = Column(c.name, k.data_type, k.column_type, c.nullable)
            changed = True
        columns.append(c)
    if not changed:
        return derived
    return TableSchema(derived.database, derived.table, tuple(columns), derived.primary_key)


@dataclass
class _Versions:
    positions: list[str] = field(default_factory=list)
    schemas: list[TableSchema | None] = field(default_factory=list)


class SchemaHistory:
    """Table schemas by source position; positions are ``BinlogPosition.key()`` strings."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], _Versions] = {}
        self.version = 0  # grows with every change, so callers can cache what they derived

    def seed(self, schemas: dict[tuple[str, str], TableSchema], position: str = "") -> None:
        """The tables as information_schema shows them, valid from ``position`` on."""
        for key, schema in schemas.items():
            self.record(key[0], key[1], position, schema)

    def record(self, database: str, table: str, position: str, schema: TableSchema | None) -> None:
        """The table's shape from ``position`` on; None: the table does not exist from there."""
        v = self._tables.setdefault((database, table), _Versions())
        i = bisect.bisect_right(v.positions, position)
        if i and v.positions[i - 1] == position:  # the same position again: the newer word wins
            v.schemas[i - 1] = schema
        else:
            v.positions.insert(i, position)
            v.schemas.insert(i, schema)
        self.version += 1

    def at(self, database: str, table: str, position: str) -> TableSchema | None:
        """The table's schema in force at ``position``, or None if unknown or dropped there."""
        v = self._tables.get((database, table))
        if v is None:
            return None
        i = bisect.bisect_right(v.positions, position)
        return v.schemas[i - 1] if i else None

    def latest(self, database: str, table: str) -> TableSchema | None:
        v = self._tables.get((database, table))
        return v.schemas[-1] if v is not None and v.schemas else None

    def tables(self, database: str | None = None) -> list[tuple[str, str]]:
        """The tables that exist in the newest version (of one database, if given)."""
        return [
            k
            for k, v in self._tables.items()
            if v.schemas and v.schemas[-1] is not None and database in (None, k[0])
        ]

    def forget_before(self, position: str) -> None:
        """Drop versions no position at or after ``position`` can ask for (bounded memory)."""
        for key in list(self._tables):
            v = self._tables[key]
            i = bisect.bisect_right(v.positions, position)
            if i > 1:
                del v.positions[: i - 1]
                del v.schemas[: i - 1]
            if len(v.schemas) == 1 and v.schemas[0] is None:
                del self._tables[key]
