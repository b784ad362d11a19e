"""MySQL column types → SQLAlchemy types, and change-record values → target values.

One declarative map for every target: SQLAlchemy renders each generic type in the target's
dialect, and ``with_variant`` gives a MySQL/MariaDB target (dialect name ``mysql``, or ``mariadb``
for a ``mariadb+…`` URL) its own type where the generic one falls short there.

Choices: unsigned BIGINT → NUMERIC(20) (no signed 64-bit type holds 2^64-1); DECIMAL keeps its
precision; DATETIME and TIMESTAMP → timestamp without zone (TIMESTAMP values are UTC); TIME →
interval (MySQL TIME spans ±838 hours); JSON → the dialect's JSON type; ENUM → string; SET →
comma-joined string, as MySQL shows it; BIT → BIGINT (BIT(64) → NUMERIC(20)); binary strings →
LargeBinary. On PostgreSQL, text takes U+0000 as U+FFFD (its text types cannot hold U+0000).
docs/TYPES.md lists what each target holds exactly and what it does not.

On a MySQL/MariaDB target:

- DATETIME and TIMESTAMP → ``DATETIME(6)``: the generic DateTime would drop the microseconds.
- TIME → ``TIME(6)``, written and read as a ``timedelta`` (:class:`MySQLTime`): SQLAlchemy has no
  MySQL interval type, and its own ``mysql.TIME`` reads a ``datetime.time``, which cannot hold a
  negative TIME or one past 24 hours.
- text types, ENUM and SET → ``LONGTEXT`` (the generic Text is ``TEXT``, 64 KiB, too small for a
  MEDIUMTEXT or LONGTEXT source column); VARCHAR and CHAR keep their length.
- BLOBs and GEOMETRY → ``LONGBLOB`` (likewise); BINARY(n) and VARBINARY(n) keep their type and
  length, so they can be part of a primary key (a BLOB cannot) and BINARY pads as the source does.
- Character set and collation are set per table by the sink (utf8mb4, binary comparison), not here.

Oracle and SQL Server (types only: the sink does not write to them yet; docs/TYPES.md has the
table, tests/unit/test_sql_types.py compiles every entry in both dialects):

- DATETIME and TIMESTAMP → Oracle ``TIMESTAMP`` (6 fractional digits), SQL Server
  ``DATETIME2(6)``: their DATE and DATETIME drop microseconds. DATE → SQL Server ``DATE``.
- FLOAT and DOUBLE → Oracle ``BINARY_FLOAT``/``BINARY_DOUBLE`` (IEEE, as the source; Oracle's
  ``DOUBLE PRECISION`` is a decimal type that stops at 1e126).
- DECIMAL beyond 38 digits (both stop at 38) → the decimal's text (``VARCHAR2``/``NVARCHAR``).
- text → SQL Server ``NVARCHAR`` (its VARCHAR holds Unicode only under a UTF-8 collation),
  ``NVARCHAR(max)`` past 4000 characters and for text types; Oracle ``VARCHAR2(n CHAR)`` up to
  1000 characters (4000 bytes of 4-byte UTF-8), else ``CLOB``.
- binary strings → SQL Server ``BINARY(n)``/``VARBINARY(n)``, else ``VARBINARY(max)`` (IMAGE is
  deprecated); Oracle ``RAW(n)`` up to 2000 bytes, else ``BLOB``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, oracle

from sources.schema import Column

MYSQL_DIALECTS = ("mysql", "mariadb")
# Oracle NUMBER and SQL Server DECIMAL hold at most 38 digits.
_MAX_DIGITS_38 = 38
# Characters a VARCHAR2(n CHAR) surely holds within its 4000 bytes (4-byte UTF-8); SQL Server's
# NVARCHAR(n) goes up to 4000.
_ORACLE_VARCHAR_CHARS = 1000
_MSSQL_NVARCHAR_CHARS = 4000
_MSSQL_VARBINARY_BYTES = 8000
_ORACLE_RAW_BYTES = 2000
_ARGS = re.compile(r"\(([^)]*)\)")
_ENUM_MEMBER = re.compile(r"'((?:[^']|'')*)'")
Decoder = Callable[[Any], Any]


def _args(column_type: str) -> list[int]:
    m = _ARGS.search(column_type)
    if not m:
        return []
    try:
        return [int(a) for a in m.group(1).split(",")]
    except ValueError:
        return []  # enum('a','b') and the like


class MySQLTime(mysql.TIME):
    """MySQL ``TIME`` that takes and gives a ``timedelta``, negative or past 24 hours included."""

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        return _format_time

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Callable[[Any], Any]:
        return lambda v: _time(v) if isinstance(v, str) else v


def _nul_free(value: Any) -> Any:
    """PostgreSQL text cannot hold U+0000: it becomes U+FFFD (as invalid UTF-8 does at the
    source) instead of the whole row being refused."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class _NulFreeText(sa.types.TypeDecorator[str]):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return _nul_free(value)


class _NulFreeString(sa.types.TypeDecorator[str]):
    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return _nul_free(value)


def _text(length: int | None = None) -> sa.types.TypeEngine[Any]:
    if length is None:
        generic: sa.types.TypeEngine[Any] = sa.Text()
        return (
            generic.with_variant(_NulFreeText(), "postgresql")
            .with_variant(mysql.LONGTEXT(), *MYSQL_DIALECTS)
            .with_variant(mssql.NVARCHAR(), "mssql")  # NVARCHAR(max); TEXT is deprecated
        )
    bounded: sa.types.TypeEngine[Any] = sa.String(length)
    bounded = bounded.with_variant(_NulFreeString(length), "postgresql")
    if length > _ORACLE_VARCHAR_CHARS:
        bounded = bounded.with_variant(oracle.CLOB(), "oracle")
    # SQL Server's VARCHAR holds Unicode only under a UTF-8 collation: NVARCHAR always does.
    return bounded.with_variant(
        mssql.NVARCHAR(length if length <= _MSSQL_NVARCHAR_CHARS else None), "mssql"
    )


def _datetime() -> sa.types.TypeEngine[Any]:
    generic: sa.types.TypeEngine[Any] = sa.DateTime()
    return (
        generic.with_variant(mysql.DATETIME(fsp=6), *MYSQL_DIALECTS)
        # Oracle DATE and SQL Server DATETIME would drop the microseconds.
        .with_variant(oracle.TIMESTAMP(), "oracle")
        .with_variant(mssql.DATETIME2(precision=6), "mssql")
    )


def _binary(length: int | None = None, fixed: bool = False) -> sa.types.TypeEngine[Any]:
    """BINARY(n)/VARBINARY(n) keep their type where the target has one (they can be keys);
    every other binary string is the target's unbounded binary type."""
    generic: sa.types.TypeEngine[Any] = sa.LargeBinary()
    if length is None:
        return generic.with_variant(mysql.LONGBLOB(), *MYSQL_DIALECTS).with_variant(
            mssql.VARBINARY(),
            "mssql",  # VARBINARY(max); IMAGE is deprecated
        )
    mine = mysql.BINARY(length) if fixed else mysql.VARBINARY(length)
    fits = length <= _MSSQL_VARBINARY_BYTES
    theirs = (mssql.BINARY(length) if fixed else mssql.VARBINARY(length)) if fits else None
    typed = generic.with_variant(mine, *MYSQL_DIALECTS).with_variant(
        theirs or mssql.VARBINARY(), "mssql"
    )
    if length <= _ORACLE_RAW_BYTES:  # RAW pads nothing: BINARY(n) values are written whole
        typed = typed.with_variant(oracle.RAW(length), "oracle")
    return typed


def _format_time(v: Any) -> Any:
    """'[-]HHH:MM:SS.ffffff', which MySQL reads whatever the driver does with a timedelta."""
    if not isinstance(v, dt.timedelta):
        return v
    us = abs(v) // dt.timedelta(microseconds=1)
    s, us = divmod(us, 1_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{'-' if v < dt.timedelta(0) else ''}{h:02d}:{m:02d}:{s:02d}.{us:06d}"


def sql_type(col: Column) -> sa.types.TypeEngine[Any]:
    t, args = col.data_type, _args(col.column_type)
    unsigned = col.unsigned
    if t in ("tinyint", "smallint", "year"):
        return sa.Integer() if unsigned and t == "smallint" else sa.SmallInteger()
    if t in ("mediumint", "int", "integer"):
        return sa.BigInteger() if unsigned else sa.Integer()
    if t == "bigint":
        return sa.Numeric(20, 0) if unsigned else sa.BigInteger()
    if t == "decimal":
        precision, scale = (args[0] if args else 10), (args[1] if len(args) > 1 else 0)
        number: sa.types.TypeEngine[Any] = sa.Numeric(precision, scale)
        if precision > _MAX_DIGITS_38:
            # No exact number type there: the decimal's text, exact but not a number.
            chars = precision + 2  # sign and point
            number = number.with_variant(oracle.VARCHAR2(chars), "oracle").with_variant(
                mssql.NVARCHAR(chars), "mssql"
            )
        return number
    if t == "float":
        return sa.Float().with_variant(oracle.BINARY_FLOAT(), "oracle")
    if t in ("double", "real"):
        # Oracle's DOUBLE PRECISION is a decimal FLOAT(126), which stops at 1e126.
        return sa.Double().with_variant(oracle.BINARY_DOUBLE(), "oracle")
    if t in ("varchar", "char"):
        return _text(args[0] if args else 255)
    if t.endswith("text") or t in ("enum", "set"):
        return _text()
    if t in ("datetime", "timestamp"):
        return _datetime()
    if t == "date":
        # Without the server's version SQLAlchemy's SQL Server DATE is DATETIME: say DATE.
        return sa.Date().with_variant(mssql.DATE(), "mssql")
    if t == "time":
        return sa.Interval().with_variant(MySQLTime(fsp=6), *MYSQL_DIALECTS)
    if t == "json":
        return sa.JSON(none_as_null=True)
    if t == "bit":
        # BIT(64) reaches 2^64-1, past the signed 64-bit BIGINT.
        return sa.Numeric(20, 0) if (args[0] if args else 1) > 63 else sa.BigInteger()
    if t in ("binary", "varbinary") and args:
        return _binary(args[0], fixed=t == "binary")
    if t in ("binary", "varbinary") or t.endswith("blob") or t == "geometry":
        return _binary()
    raise TypeError(f"column {col.name!r}: MySQL type {col.column_type!r} has no target mapping")


def _time(v: Any) -> dt.timedelta:
    neg = v.startswith("-")
    h, m, s = v.lstrip("-").split(":")
    td = dt.timedelta(hours=int(h), minutes=int(m), seconds=float(s))
    return -td if neg else td


def _identity(v: Any) -> Any:
    return v


def decoder(col: Column) -> Decoder:
    """Turn a change record's JSON-safe value back into the Python value the target takes."""
    t = col.data_type
    if t == "decimal" or (t == "bigint" and col.unsigned):
        return lambda v: decimal.Decimal(str(v))
    if t in ("datetime", "timestamp"):
        return dt.datetime.fromisoformat
    if t == "date":
        return dt.date.fromisoformat
    if t == "time":
        return _time
    if t == "json":
        return lambda v: orjson.loads(v) if isinstance(v, str) else v
    if t == "set":
        order = {m: i for i, m in enumerate(_ENUM_MEMBER.findall(col.column_type))}
        return lambda v: (
            ",".join(sorted(v, key=lambda m: order.get(m, len(order))))
            if isinstance(v, list)
            else v
        )
    if t in ("binary", "varbinary") or t.endswith("blob") or t == "geometry":
        return base64.b64decode
    return _identity
