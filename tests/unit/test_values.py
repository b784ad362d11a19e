"""The one value normaliser: each MySQL type family becomes its documented JSON-safe form.

Inputs are the Python values PyMySQL (snapshot) and pymysqlreplication (binlog) deliver.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import struct
from typing import Any

import orjson
import pytest

from sources.schema import Column
from sources.values import row_normaliser


def norm(data_type: str, value: Any, column_type: str | None = None) -> Any:
    col = Column("c", data_type, column_type or data_type)
    return row_normaliser([col])({"c": value})["c"]


# --------------------------------------------------------------------------- DECIMAL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (decimal.Decimal("12.50"), "12.50"),
        (decimal.Decimal("-0.000001"), "-0.000001"),
        (decimal.Decimal("99999999999999999999.99"), "99999999999999999999.99"),
        (decimal.Decimal("0"), "0"),
        (7, "7"),
    ],
)
def test_decimal_is_an_exact_string(value: Any, expected: str) -> None:
    assert norm("decimal", value, "decimal(22,2)") == expected


# --------------------------------------------------------------------------- dates and times


@pytest.mark.parametrize("data_type", ["datetime", "timestamp"])
def test_datetime_and_timestamp_are_iso_without_zone(data_type: str) -> None:
    assert norm(data_type, dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"
    assert norm(data_type, dt.datetime(2024, 1, 2, 3, 4, 5, 123456)) == (
        "2024-01-02T03:04:05.123456"
    )
    assert norm(data_type, dt.datetime(2024, 1, 2, 3, 4, 5, 500000)) == (
        "2024-01-02T03:04:05.500000"
    )
    aware = dt.datetime(2024, 1, 2, 3, 4, 5, 7, tzinfo=dt.UTC)
    assert norm(data_type, aware) == "2024-01-02T03:04:05.000007"
    assert norm(data_type, dt.datetime(1000, 1, 1)) == "1000-01-01T00:00:00"


def test_datetime_from_a_date_value() -> None:
    assert norm("datetime", dt.date(2024, 2, 29)) == "2024-02-29T00:00:00"


def test_date_is_iso() -> None:
    assert norm("date", dt.date(2024, 2, 29)) == "2024-02-29"
    assert norm("date", dt.date(1, 1, 1)) == "0001-01-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(0), "00:00:00"),
        (dt.timedelta(hours=12), "12:00:00"),
        (dt.timedelta(hours=12, microseconds=500000), "12:00:00.500000"),
        (dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=4), "01:02:03.000004"),
        (dt.timedelta(hours=25, minutes=30), "25:30:00"),
        (dt.timedelta(hours=838, minutes=59, seconds=59), "838:59:59"),
        (-dt.timedelta(hours=838, minutes=59, seconds=59), "-838:59:59"),
        # PyMySQL's value for TIME '-838:59:59'.
        (dt.timedelta(days=-35, seconds=3601), "-838:59:59"),
        (-dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=4), "-01:02:03.000004"),
        (-dt.timedelta(microseconds=1), "-00:00:00.000001"),
        (-dt.timedelta(seconds=0.5), "-00:00:00.500000"),
        (dt.timedelta(days=2, hours=1), "49:00:00"),
    ],
)
def test_time_from_timedelta_is_signed_hours_minutes_seconds(
    value: dt.timedelta, expected: str
) -> None:
    assert norm("time", value, "time(6)") == expected


def test_time_from_a_time_value() -> None:
    assert norm("time", dt.time(12, 0, 0, 500000)) == "12:00:00.500000"
    assert norm("time", dt.time(7, 8, 9)) == "07:08:09"


# --------------------------------------------------------------------------- strings and binary


@pytest.mark.parametrize(
    "data_type",
    ["varbinary", "blob", "tinyblob", "mediumblob", "longblob", "geometry"],
)
def test_binary_is_base64(data_type: str) -> None:
    raw = b"\x00\xff\xfe binary \x80"
    assert norm(data_type, raw) == base64.b64encode(raw).decode("ascii")
    assert norm(data_type, bytearray(raw)) == base64.b64encode(raw).decode("ascii")
    assert norm(data_type, b"") == ""


def test_fixed_binary_is_padded_to_its_length_as_a_select_returns_it() -> None:
    # The binlog strips BINARY(n)'s trailing zero bytes; the snapshot SELECT keeps them.
    padded = base64.b64encode(b"a\x00\x00\x00").decode()
    assert norm("binary", b"a", "binary(4)") == padded
    assert norm("binary", b"a\x00\x00\x00", "binary(4)") == padded
    assert (
        norm("binary", b"\x01\x02\x03\x04", "binary(4)")
        == base64.b64encode(b"\x01\x02\x03\x04").decode()
    )


def test_binary_given_as_str_is_its_latin1_bytes_in_base64() -> None:
    assert norm("varbinary", "\x00\xffa") == base64.b64encode(b"\x00\xffa").decode()


@pytest.mark.parametrize(
    ("data_type", "column_type"),
    [
        ("varchar", "varchar(20)"),
        ("char", "char(5)"),
        ("text", "text"),
        ("tinytext", "tinytext"),
        ("mediumtext", "mediumtext"),
        ("longtext", "longtext"),
        ("enum", "enum('a','b')"),
    ],
)
def test_text_bytes_become_str(data_type: str, column_type: str) -> None:
    assert norm(data_type, "héllo ✓", column_type) == "héllo ✓"
    assert norm(data_type, "héllo ✓".encode(), column_type) == "héllo ✓"
    assert norm(data_type, bytearray(b"abc"), column_type) == "abc"


def test_empty_string_stays_empty() -> None:
    assert norm("varchar", "", "varchar(10)") == ""
    assert norm("text", b"") == ""
    assert norm("enum", "", "enum('','x')") == ""


# --------------------------------------------------------------------------- SET, BIT, JSON


def test_set_is_a_sorted_list() -> None:
    col = "set('b','a','c')"
    # pymysqlreplication delivers a python set, PyMySQL the comma-joined text.
    assert norm("set", {"c", "a"}, col) == ["a", "c"]
    assert norm("set", frozenset({"b"}), col) == ["b"]
    assert norm("set", "c,a", col) == ["a", "c"]
    assert norm("set", "b,a,c", col) == ["a", "b", "c"]
    assert norm("set", "", col) == []
    assert norm("set", ["b", "a"], col) == ["a", "b"]


def test_bit_is_an_integer() -> None:
    # pymysqlreplication: a string of bits; PyMySQL: big-endian bytes.
    assert norm("bit", "10101", "bit(5)") == 21
    assert norm("bit", b"\x15", "bit(5)") == 21
    assert norm("bit", "0", "bit(1)") == 0
    assert norm("bit", b"\x01", "bit(1)") == 1
    assert norm("bit", b"\x80\x00\x00\x00\x00\x00\x00\x00", "bit(64)") == 2**63
    assert norm("bit", "1" * 64, "bit(64)") == 2**64 - 1
    assert norm("bit", b"\xff" * 8, "bit(64)") == 2**64 - 1


def test_json_text_stays_text() -> None:
    text = '{"x": 1, "a": [1, 2], "s": "é"}'
    assert norm("json", text) == text
    assert norm("json", text.encode()) == text
    assert norm("json", "null") == "null"


def test_json_from_mysql_binlog_becomes_json_text() -> None:
    """MySQL's binlog stores JSON binary; pymysqlreplication parses it into Python values with
    bytes keys and bytes strings. The documented form is the JSON text (as a snapshot reads it)."""
    binlog_value = {b"a": [1, 2], b"s": b"x", b"n": None}
    out = norm("json", binlog_value)
    assert isinstance(out, str)
    assert json.loads(out) == {"a": [1, 2], "s": "x", "n": None}


# --------------------------------------------------------------------------- numbers, NULL


@pytest.mark.parametrize("data_type", ["float", "double", "real"])
def test_float_from_decimal_becomes_float(data_type: str) -> None:
    out = norm(data_type, decimal.Decimal("1.5"))
    assert out == 1.5
    assert isinstance(out, float)
    assert norm(data_type, 2.25) == 2.25


def test_float_column_is_the_same_from_snapshot_and_binlog() -> None:
    """FLOAT 1.1: PyMySQL reads the text '1.1'; pymysqlreplication unpacks the 4-byte float.

    The module promises the same value for the same stored value on both paths."""
    from_snapshot = 1.1
    from_binlog = struct.unpack("<f", struct.pack("<f", 1.1))[0]
    assert norm("float", from_binlog) == norm("float", from_snapshot)


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        ("int", -5),
        ("bigint", 2**64 - 1),
        ("tinyint", 1),
        ("year", 2024),
        ("mediumint", 8_388_607),
    ],
)
def test_integers_pass_through(data_type: str, value: int) -> None:
    assert norm(data_type, value) == value


@pytest.mark.parametrize(
    "data_type",
    [
        *("decimal", "datetime", "timestamp", "date", "time", "varbinary", "blob", "set"),
        *("bit", "json", "float", "varchar", "text", "enum", "int"),
    ],
)
def test_none_stays_none(data_type: str) -> None:
    assert norm(data_type, None) is None


def test_row_normaliser_converts_every_column_and_fills_missing_ones() -> None:
    cols = [
        Column("id", "bigint", "bigint(20) unsigned", False),
        Column("price", "decimal", "decimal(12,2)"),
        Column("at", "timestamp", "timestamp(6)"),
        Column("photo", "blob", "blob"),
        Column("tags", "set", "set('x','y')"),
        Column("note", "varchar", "varchar(10)"),
    ]
    normalise = row_normaliser(cols)
    row = {
        "id": 18446744073709551615,
        "price": decimal.Decimal("3.10"),
        "at": dt.datetime(2024, 5, 6, 7, 8, 9, 10),
        "photo": b"\x01\x02",
        "tags": {"y", "x"},
        "extra": "ignored",
    }
    out = normalise(row)
    assert out == {
        "id": 18446744073709551615,
        "price": "3.10",
        "at": "2024-05-06T07:08:09.000010",
        "photo": "AQI=",
        "tags": ["x", "y"],
        "note": None,
    }
    assert list(out) == [c.name for c in cols]
    # The result is JSON-safe.
    assert orjson.loads(orjson.dumps(out)) == out
    # The input row is not modified.
    assert row["price"] == decimal.Decimal("3.10")


# --------------------------------------------------------------------------- zero dates, YEAR 0


@pytest.mark.parametrize(
    ("data_type", "snapshot_value"),
    [
        ("date", "0000-00-00"),
        ("date", "2020-00-15"),
        ("datetime", "0000-00-00 00:00:00"),
        ("datetime", "2020-01-00 10:00:00.000000"),
        ("timestamp", "0000-00-00 00:00:00.000000"),
    ],
)
def test_zero_dates_are_null_from_snapshot_and_binlog(data_type: str, snapshot_value: str) -> None:
    # PyMySQL gives a date it cannot represent as its text; the binlog reader gives None.
    assert norm(data_type, snapshot_value) is None
    assert norm(data_type, None) is None


def test_zero_timestamp_from_the_binlog_is_null() -> None:
    # The binlog reader turns the zero TIMESTAMP (0 s after the epoch) into 1970-01-01 00:00:00.
    assert norm("timestamp", dt.datetime(1970, 1, 1)) is None
    assert norm("timestamp", dt.datetime(1970, 1, 1, 0, 0, 1)) == "1970-01-01T00:00:01"
    assert norm("datetime", dt.datetime(1970, 1, 1)) == "1970-01-01T00:00:00"


def test_year_zero_is_the_same_from_snapshot_and_binlog() -> None:
    assert norm("year", 0) == 0  # snapshot
    assert norm("year", 1900) == 0  # binlog: byte 0 + 1900
    assert norm("year", 1901) == 1901
    assert norm("year", 2155) == 2155


def test_all_zero_fixed_binary_from_the_binlog_is_padded() -> None:
    # The binlog reader gives an all-zero BINARY(n) as the empty text ''.
    assert norm("binary", "", "binary(4)") == base64.b64encode(b"\x00" * 4).decode()
    assert norm("binary", b"", "binary(4)") == base64.b64encode(b"\x00" * 4).decode()
