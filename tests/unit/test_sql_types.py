"""MySQL column types → SQLAlchemy types, and change-record values back to target values."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import random
from typing import Any

import pytest
import sqlalchemy as sa

from sinks.sql_types import decoder, sql_type
from sources.schema import Column
from sources.values import converter_for

Expected = tuple[type[sa.types.TypeEngine[Any]], dict[str, Any]]

MAPPING: list[tuple[str, str, Expected]] = [
    ("tinyint", "tinyint(4)", (sa.SmallInteger, {})),
    ("tinyint", "tinyint(3) unsigned", (sa.SmallInteger, {})),
    ("tinyint", "tinyint(1)", (sa.SmallInteger, {})),
    ("smallint", "smallint(6)", (sa.SmallInteger, {})),
    ("smallint", "smallint(5) unsigned", (sa.Integer, {})),
    ("year", "year(4)", (sa.SmallInteger, {})),
    ("mediumint", "mediumint(9)", (sa.Integer, {})),
    ("mediumint", "mediumint(8) unsigned", (sa.BigInteger, {})),
    ("int", "int(11)", (sa.Integer, {})),
    ("int", "int(10) unsigned", (sa.BigInteger, {})),
    ("bigint", "bigint(20)", (sa.BigInteger, {})),
    ("bigint", "bigint(20) unsigned", (sa.Numeric, {"precision": 20, "scale": 0})),
    ("bigint", "bigint(20) unsigned zerofill", (sa.Numeric, {"precision": 20, "scale": 0})),
    ("decimal", "decimal(12,2)", (sa.Numeric, {"precision": 12, "scale": 2})),
    ("decimal", "decimal(65,30)", (sa.Numeric, {"precision": 65, "scale": 30})),
    ("decimal", "decimal(10,0)", (sa.Numeric, {"precision": 10, "scale": 0})),
    ("decimal", "decimal(8,3) unsigned", (sa.Numeric, {"precision": 8, "scale": 3})),
    ("float", "float", (sa.Float, {})),
    ("double", "double", (sa.Double, {})),
    ("real", "real", (sa.Double, {})),
    ("varchar", "varchar(200)", (sa.String, {"length": 200})),
    ("char", "char(10)", (sa.String, {"length": 10})),
    ("text", "text", (sa.Text, {})),
    ("tinytext", "tinytext", (sa.Text, {})),
    ("mediumtext", "mediumtext", (sa.Text, {})),
    ("longtext", "longtext", (sa.Text, {})),
    ("enum", "enum('a','b')", (sa.Text, {})),
    ("set", "set('x','y')", (sa.Text, {})),
    ("datetime", "datetime", (sa.DateTime, {"timezone": False})),
    ("datetime", "datetime(6)", (sa.DateTime, {"timezone": False})),
    ("timestamp", "timestamp", (sa.DateTime, {"timezone": False})),
    ("date", "date", (sa.Date, {})),
    ("time", "time", (sa.Interval, {})),
    ("time", "time(6)", (sa.Interval, {})),
    ("json", "json", (sa.JSON, {})),
    ("bit", "bit(1)", (sa.BigInteger, {})),
    ("bit", "bit(64)", (sa.Numeric, {"precision": 20, "scale": 0})),
    ("binary", "binary(16)", (sa.LargeBinary, {})),
    ("varbinary", "varbinary(255)", (sa.LargeBinary, {})),
    ("blob", "blob", (sa.LargeBinary, {})),
    ("tinyblob", "tinyblob", (sa.LargeBinary, {})),
    ("mediumblob", "mediumblob", (sa.LargeBinary, {})),
    ("longblob", "longblob", (sa.LargeBinary, {})),
    ("geometry", "geometry", (sa.LargeBinary, {})),
]


@pytest.mark.parametrize(("data_type", "column_type", "expected"), MAPPING)
def test_sql_type_mapping(data_type: str, column_type: str, expected: Expected) -> None:
    cls, attrs = expected
    t = sql_type(Column("c", data_type, column_type))
    assert type(t) is cls, (column_type, t)
    for name, value in attrs.items():
        assert getattr(t, name) == value, (column_type, name)


def test_unsigned_bigint_type_holds_the_largest_value() -> None:
    t = sql_type(Column("c", "bigint", "bigint(20) unsigned"))
    assert isinstance(t, sa.Numeric)
    assert t.precision is not None
    assert len(str(2**64 - 1)) <= t.precision


@pytest.mark.parametrize("data_type", ["point", "inet6", "uuid", "vector", "nonsense"])
def test_unknown_type_raises_type_error_naming_the_column(data_type: str) -> None:
    with pytest.raises(TypeError) as exc:
        sql_type(Column("weird_col", data_type, f"{data_type}(3)"))
    assert "weird_col" in str(exc.value)
    assert data_type in str(exc.value)


def test_every_mapped_type_compiles_on_postgresql_and_sqlite() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    for data_type, column_type, _ in MAPPING:
        t = sql_type(Column("c", data_type, column_type))
        for dialect in (postgresql.dialect(), sqlite.dialect()):
            assert t.compile(dialect=dialect)
    pg = postgresql.dialect()
    assert sql_type(Column("c", "bigint", "bigint unsigned")).compile(dialect=pg) == (
        "NUMERIC(20, 0)"
    )
    assert sql_type(Column("c", "time", "time")).compile(dialect=pg) == "INTERVAL"
    assert sql_type(Column("c", "datetime", "datetime")).compile(dialect=pg) == (
        "TIMESTAMP WITHOUT TIME ZONE"
    )


# --------------------------------------------------------------------------- decoders


def round_trip(data_type: str, column_type: str, value: Any) -> Any:
    """Source value → change-record value (sources.values) → target value (sinks.sql_types)."""
    col = Column("c", data_type, column_type)
    return decoder(col)(converter_for(col)(value))


@pytest.mark.parametrize(
    "value",
    [
        decimal.Decimal("12.50"),
        decimal.Decimal("-0.000001"),
        decimal.Decimal("12345678901234567890.123456789"),
        decimal.Decimal("0"),
    ],
)
def test_decimal_round_trip(value: decimal.Decimal) -> None:
    out = round_trip("decimal", "decimal(40,9)", value)
    assert isinstance(out, decimal.Decimal)
    assert out == value
    assert str(out) == str(value)


def test_unsigned_bigint_round_trip() -> None:
    out = round_trip("bigint", "bigint(20) unsigned", 2**64 - 1)
    assert out == decimal.Decimal(2**64 - 1)


@pytest.mark.parametrize("data_type", ["datetime", "timestamp"])
@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        dt.datetime(1000, 1, 1, 0, 0, 0, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ],
)
def test_datetime_round_trip(data_type: str, value: dt.datetime) -> None:
    out = round_trip(data_type, f"{data_type}(6)", value)
    assert out == value
    assert out.tzinfo is None


def test_date_round_trip() -> None:
    for value in (dt.date(2024, 2, 29), dt.date(1000, 1, 1), dt.date(9999, 12, 31)):
        assert round_trip("date", "date", value) == value


@pytest.mark.parametrize(
    "value",
    [
        dt.timedelta(0),
        dt.timedelta(hours=12, microseconds=500000),
        dt.timedelta(hours=838, minutes=59, seconds=59),
        -dt.timedelta(hours=838, minutes=59, seconds=59),
        dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
        -dt.timedelta(microseconds=1),
        dt.timedelta(hours=49, minutes=1, seconds=2, microseconds=3),
    ],
)
def test_time_round_trip(value: dt.timedelta) -> None:
    assert round_trip("time", "time(6)", value) == value


def test_time_round_trip_random() -> None:
    rng = random.Random(0)
    limit = (838 * 3600 + 59 * 60 + 59) * 1_000_000
    for _ in range(2000):
        value = dt.timedelta(microseconds=rng.randrange(-limit, limit + 1))
        assert round_trip("time", "time(6)", value) == value


@pytest.mark.parametrize("data_type", ["blob", "varbinary", "longblob", "geometry"])
def test_binary_round_trip(data_type: str) -> None:
    rng = random.Random(data_type)
    for n in (0, 1, 2, 3, 255, 4096):
        value = rng.randbytes(n)
        assert round_trip(data_type, data_type, value) == value


def test_binary_decoder_takes_base64() -> None:
    col = Column("c", "blob", "blob")
    assert decoder(col)(base64.b64encode(b"\x00\x01").decode()) == b"\x00\x01"


@pytest.mark.parametrize(
    "text", ['{"a": 1, "b": [true, null, "x"]}', "[1, 2.5]", '"s"', "null", "3"]
)
def test_json_round_trip(text: str) -> None:
    assert round_trip("json", "json", text) == json.loads(text)


def test_json_decoder_accepts_already_parsed_values() -> None:
    assert decoder(Column("c", "json", "json"))({"a": 1}) == {"a": 1}


def test_bit_round_trip() -> None:
    assert round_trip("bit", "bit(5)", b"\x15") == 21
    assert round_trip("bit", "bit(5)", "10101") == 21


def test_other_values_pass_through() -> None:
    assert round_trip("int", "int(11)", -7) == -7
    assert round_trip("varchar", "varchar(10)", "héllo") == "héllo"
    assert round_trip("enum", "enum('a','b')", "b") == "b"
    assert round_trip("double", "double", 2.5) == 2.5
    assert round_trip("text", "text", b"abc") == "abc"


def test_set_becomes_the_comma_joined_string_mysql_shows() -> None:
    """MySQL shows a SET value's members in the order of the column definition."""
    column_type = "set('c','b','a')"
    # As a snapshot reads it ("c,a": MySQL's own text) and as the binlog delivers it.
    assert round_trip("set", column_type, "c,a") == "c,a"
    assert round_trip("set", column_type, {"a", "c"}) == "c,a"


def test_set_round_trip_in_definition_order() -> None:
    column_type = "set('a','b','c')"
    assert round_trip("set", column_type, {"c", "a"}) == "a,c"
    assert round_trip("set", column_type, "a,b,c") == "a,b,c"


def test_bit_64_holds_every_bit_set() -> None:
    from sqlalchemy.dialects import postgresql

    col = Column("c", "bit", "bit(64)")
    assert sql_type(col).compile(dialect=postgresql.dialect()) == "NUMERIC(20, 0)"
    assert round_trip("bit", "bit(64)", b"\xff" * 8) == 2**64 - 1
    assert isinstance(sql_type(Column("c", "bit", "bit(63)")), sa.BigInteger)


@pytest.mark.parametrize(
    ("data_type", "column_type", "compiled"),
    [("varchar", "varchar(10)", "VARCHAR(10)"), ("char", "char(3)", "VARCHAR(3)"),
     ("text", "text", "TEXT"), ("enum", "enum('a')", "TEXT"), ("set", "set('a')", "TEXT")],
)  # fmt: skip
def test_postgresql_text_takes_nul_as_replacement_character(
    data_type: str, column_type: str, compiled: str
) -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    t = sql_type(Column("c", data_type, column_type))
    pg = postgresql.dialect()
    assert t.compile(dialect=pg) == compiled
    bind = t.dialect_impl(pg).bind_processor(pg)
    assert bind is not None
    assert bind("a\x00b") == "a\ufffdb"
    assert bind(None) is None
    for other in (sqlite.dialect(), mysql.dialect()):  # they hold U+0000 as it is
        proc = t.dialect_impl(other).bind_processor(other)
        assert proc is None or proc("a\x00b") == "a\x00b"


# Oracle and SQL Server: what each mapped type compiles to (docs/TYPES.md, "Oracle and SQL Server").
ORACLE_MSSQL: dict[str, tuple[str, str]] = {
    "tinyint(4)": ("SMALLINT", "SMALLINT"),
    "tinyint(3) unsigned": ("SMALLINT", "SMALLINT"),
    "tinyint(1)": ("SMALLINT", "SMALLINT"),
    "smallint(6)": ("SMALLINT", "SMALLINT"),
    "smallint(5) unsigned": ("INTEGER", "INTEGER"),
    "year(4)": ("SMALLINT", "SMALLINT"),
    "mediumint(9)": ("INTEGER", "INTEGER"),
    "mediumint(8) unsigned": ("NUMBER(19)", "BIGINT"),
    "int(11)": ("INTEGER", "INTEGER"),
    "int(10) unsigned": ("NUMBER(19)", "BIGINT"),
    "bigint(20)": ("NUMBER(19)", "BIGINT"),
    "bigint(20) unsigned": ("NUMERIC(20, 0)", "NUMERIC(20, 0)"),
    "bigint(20) unsigned zerofill": ("NUMERIC(20, 0)", "NUMERIC(20, 0)"),
    "decimal(12,2)": ("NUMERIC(12, 2)", "NUMERIC(12, 2)"),
    "decimal(65,30)": ("VARCHAR2(67 CHAR)", "NVARCHAR(67)"),
    "decimal(10,0)": ("NUMERIC(10, 0)", "NUMERIC(10, 0)"),
    "decimal(8,3) unsigned": ("NUMERIC(8, 3)", "NUMERIC(8, 3)"),
    "float": ("BINARY_FLOAT", "FLOAT"),
    "double": ("BINARY_DOUBLE", "DOUBLE PRECISION"),
    "real": ("BINARY_DOUBLE", "DOUBLE PRECISION"),
    "varchar(200)": ("VARCHAR2(200 CHAR)", "NVARCHAR(200)"),
    "char(10)": ("VARCHAR2(10 CHAR)", "NVARCHAR(10)"),
    "text": ("CLOB", "NVARCHAR(max)"),
    "tinytext": ("CLOB", "NVARCHAR(max)"),
    "mediumtext": ("CLOB", "NVARCHAR(max)"),
    "longtext": ("CLOB", "NVARCHAR(max)"),
    "enum('a','b')": ("CLOB", "NVARCHAR(max)"),
    "set('x','y')": ("CLOB", "NVARCHAR(max)"),
    "datetime": ("TIMESTAMP", "DATETIME2(6)"),
    "datetime(6)": ("TIMESTAMP", "DATETIME2(6)"),
    "timestamp": ("TIMESTAMP", "DATETIME2(6)"),
    "date": ("DATE", "DATE"),
    "time": ("INTERVAL DAY TO SECOND", "DATETIME"),
    "time(6)": ("INTERVAL DAY TO SECOND", "DATETIME"),
    "json": ("JSON", "NVARCHAR(max)"),
    "bit(1)": ("NUMBER(19)", "BIGINT"),
    "bit(64)": ("NUMERIC(20, 0)", "NUMERIC(20, 0)"),
    "binary(16)": ("RAW(16)", "BINARY(16)"),
    "varbinary(255)": ("RAW(255)", "VARBINARY(255)"),
    "blob": ("BLOB", "VARBINARY(max)"),
    "tinyblob": ("BLOB", "VARBINARY(max)"),
    "mediumblob": ("BLOB", "VARBINARY(max)"),
    "longblob": ("BLOB", "VARBINARY(max)"),
    "geometry": ("BLOB", "VARBINARY(max)"),
}


def test_every_mapped_type_compiles_on_oracle_and_sql_server() -> None:
    from sqlalchemy.dialects import mssql, oracle

    assert set(ORACLE_MSSQL) == {column_type for _, column_type, _ in MAPPING}
    for data_type, column_type, _ in MAPPING:
        t = sql_type(Column("c", data_type, column_type))
        compiled = (
            str(t.compile(dialect=oracle.dialect())),
            str(t.compile(dialect=mssql.dialect())),
        )
        assert compiled == ORACLE_MSSQL[column_type], column_type


@pytest.mark.parametrize(
    ("column_type", "oracle_sql", "mssql_sql"),
    [
        ("varchar(1000)", "VARCHAR2(1000 CHAR)", "NVARCHAR(1000)"),
        ("varchar(1001)", "CLOB", "NVARCHAR(1001)"),
        ("varchar(4001)", "CLOB", "NVARCHAR(max)"),
        ("varbinary(2001)", "BLOB", "VARBINARY(2001)"),
        ("varbinary(8001)", "BLOB", "VARBINARY(max)"),
        ("decimal(38,10)", "NUMERIC(38, 10)", "NUMERIC(38, 10)"),
        ("decimal(39,10)", "VARCHAR2(41 CHAR)", "NVARCHAR(41)"),
    ],
)
def test_oracle_and_sql_server_limits_pick_the_larger_type(
    column_type: str, oracle_sql: str, mssql_sql: str
) -> None:
    from sqlalchemy.dialects import mssql, oracle

    t = sql_type(Column("c", column_type.split("(")[0], column_type))
    assert str(t.compile(dialect=oracle.dialect())) == oracle_sql
    assert str(t.compile(dialect=mssql.dialect())) == mssql_sql
