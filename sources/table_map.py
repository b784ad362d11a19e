"""The schema of a row event, read from the binlog's own table map (``binlog_row_metadata=FULL``).

Every row event is preceded by a TABLE_MAP event that describes the table *as it was when the row
was written*: column types with their metadata (length, precision, fractional seconds), a
nullability bitmap and, with FULL row metadata, column names, signedness, character sets, ENUM
and SET values, geometry subtypes and the primary key in key order. This module turns one such
event into the same :class:`~sources.schema.TableSchema` that information_schema gives, so a row
is always described by its own shape, however far the reader lags behind later DDL.

What the table map cannot say, and how each gap is closed (see sources/schema_history.py):

- integer display widths and ZEROFILL (``int(5)``), FLOAT/DOUBLE ``(M,D)``: the default width of
  the server flavour is produced (MariaDB ``int(11)``, MySQL 8 ``int``); the schema history puts
  back the declared text when its column has the same name and the same shape otherwise;
- ENUM/SET values in a non-UTF-8 character set: pymysqlreplication decodes them as UTF-8 and
  gives ``''`` for what fails; the history's values are used when their count agrees;
- JSON on MariaDB: it is ``LONGTEXT`` with a ``json_valid`` CHECK, in the binlog and in
  information_schema alike, so it stays ``longtext`` here; its values are the JSON text as
  written. MySQL's native JSON has its own type code and becomes ``json``.
- MariaDB's UUID, INET4 and INET6 arrive as ``binary(16)``/``binary(4)``: they are described as
  such (the sink does not map those types yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from sources.schema import Column, TableSchema

# Bytes per character of each character set (information_schema.CHARACTER_SETS.MAXLEN): the
# table map gives CHAR/VARCHAR lengths in bytes, information_schema in characters.
MBMAXLEN = {
    "armscii8": 1, "ascii": 1, "big5": 2, "binary": 1, "cp1250": 1, "cp1251": 1, "cp1256": 1,
    "cp1257": 1, "cp850": 1, "cp852": 1, "cp866": 1, "cp932": 2, "dec8": 1, "eucjpms": 3,
    "euckr": 2, "gb18030": 4, "gb2312": 2, "gbk": 2, "geostd8": 1, "greek": 1, "hebrew": 1,
    "hp8": 1, "keybcs2": 1, "koi8r": 1, "koi8u": 1, "latin1": 1, "latin2": 1, "latin5": 1,
    "latin7": 1, "macce": 1, "macroman": 1, "sjis": 2, "swe7": 1, "tis620": 1, "ucs2": 2,
    "ujis": 3, "utf16": 4, "utf16le": 4, "utf32": 4, "utf8": 3, "utf8mb3": 3, "utf8mb4": 4,
}  # fmt: skip

_INTEGERS = {
    FIELD_TYPE.TINY: ("tinyint", 4, 3),
    FIELD_TYPE.SHORT: ("smallint", 6, 5),
    FIELD_TYPE.INT24: ("mediumint", 9, 8),
    FIELD_TYPE.LONG: ("int", 11, 10),
    FIELD_TYPE.LONGLONG: ("bigint", 20, 20),
}  # base type, MariaDB default display width signed / unsigned
_TEXTS = {1: "tinytext", 2: "text", 3: "mediumtext", 4: "longtext"}
_BLOBS = {1: "tinyblob", 2: "blob", 3: "mediumblob", 4: "longblob"}
_GEOMETRIES = (
    "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
    "multipolygon", "geometrycollection",
)  # fmt: skip
_TEMPORALS = {
    FIELD_TYPE.TIMESTAMP2: "timestamp",
    FIELD_TYPE.DATETIME2: "datetime",
    FIELD_TYPE.TIME2: "time",
    FIELD_TYPE.TIMESTAMP: "timestamp",
    FIELD_TYPE.DATETIME: "datetime",
    FIELD_TYPE.TIME: "time",
    FIELD_TYPE.DATE: "date",
    FIELD_TYPE.NEWDATE: "date",
}


def quote_member(value: str) -> str:
    """An ENUM/SET member as information_schema writes it: quotes and backslashes doubled."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _charset(col: Any) -> str | None:
    collation = getattr(col, "collation_name", None)
    if not collation:
        return None
    return "binary" if collation == "binary" else str(collation).split("_", 1)[0]


def _chars(col: Any) -> int | None:
    """A CHAR/VARCHAR length in characters, from its length in bytes and its character set."""
    size = MBMAXLEN.get(_charset(col) or "")
    return None if size is None else int(col.max_length) // size


def column_type(col: Any, mariadb: bool, geometry: str | None = None) -> tuple[str, str] | None:
    """(data_type, column_type) as information_schema shows them; None if the type is unknown."""
    t = col.type
    unsigned = " unsigned" if getattr(col, "unsigned", False) else ""
    if t in _INTEGERS:
        base, signed_width, unsigned_width = _INTEGERS[t]
        if not mariadb:
            return base, base + unsigned
        return base, f"{base}({unsigned_width if unsigned else signed_width}){unsigned}"
    if t == FIELD_TYPE.NEWDECIMAL:
        return "decimal", f"decimal({col.precision},{col.decimals}){unsigned}"
    if t == FIELD_TYPE.FLOAT:
        return "float", "float" + unsigned
    if t == FIELD_TYPE.DOUBLE:
        return "double", "double" + unsigned
    if t == FIELD_TYPE.BIT:
        return "bit", f"bit({col.bits})"
    if t == FIELD_TYPE.YEAR:
        return "year", "year(4)" if mariadb else "year"
    if t in _TEMPORALS:
        base = _TEMPORALS[t]
        fsp = getattr(col, "fsp", 0) or 0
        return base, f"{base}({fsp})" if fsp else base
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING):
        binary = _charset(col) == "binary"
        if binary:
            base = "varbinary" if t != FIELD_TYPE.STRING else "binary"
            return base, f"{base}({col.max_length})"
        chars = _chars(col)
        if chars is None:
            return None
        base = "varchar" if t != FIELD_TYPE.STRING else "char"
        return base, f"{base}({chars})"
    if t == FIELD_TYPE.BLOB:
        kinds = _BLOBS if _charset(col) == "binary" else _TEXTS
        blob = kinds.get(col.length_size)
        return None if blob is None else (blob, blob)
    if t == FIELD_TYPE.JSON:
        return "json", "json"
    if t == FIELD_TYPE.GEOMETRY:
        base = geometry or "geometry"
        return base, base
    if t == FIELD_TYPE.ENUM and col.enum_values is not None:
        members = col.enum_values[1:]  # pymysqlreplication puts '' (index 0) in front
        return "enum", "enum(" + ",".join(quote_member(v) for v in members) + ")"
    if t == FIELD_TYPE.SET and col.set_values is not None:
        return "set", "set(" + ",".join(quote_member(v) for v in col.set_values) + ")"
    return None


def _nullable(bitmask: bytes | None, index: int) -> bool:
    if not bitmask or index // 8 >= len(bitmask):
        return True
    return bool(bitmask[index // 8] & (1 << (index % 8)))


def table_map_schema(event: Any) -> TableSchema | None:
    """The schema of a TableMapEvent; None when it lacks column names (metadata not FULL)."""
    columns: Sequence[Any] = event.columns
    meta = event.optional_metadata
    if any(not getattr(c, "name", None) for c in columns):
        return None
    mariadb = getattr(event, "dbms", "mysql") == "mariadb"
    geometries = list(getattr(meta, "geometry_type_list", None) or [])
    out: list[Column] = []
    for i, col in enumerate(columns):
        geometry = None
        if col.type == FIELD_TYPE.GEOMETRY and geometries:
            code = geometries.pop(0)
            geometry = _GEOMETRIES[code] if 0 <= code < len(_GEOMETRIES) else None
        types = column_type(col, mariadb, geometry)
        data_type, full = types if types is not None else ("unknown", f"unknown({col.type})")
        out.append(Column(col.name, data_type, full, _nullable(event.null_bitmask, i)))
    key = list(getattr(meta, "simple_primary_key_list", None) or [])
    if not key:
        key = list((getattr(meta, "primary_keys_with_prefix", None) or {}).keys())
    return TableSchema(event.schema, event.table, tuple(out), tuple(columns[i].name for i in key))
