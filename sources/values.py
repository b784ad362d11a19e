"""One value normaliser for snapshot rows and binlog rows alike.

Both paths must produce the same JSON-safe value for the same stored value, or a snapshot row and
a later change of it would disagree. Choices (documented in docs/CHANGE_EVENTS.md):
DECIMAL → string (exact); DATETIME/TIMESTAMP → ISO-8601 without zone (TIMESTAMP is UTC: snapshot
sessions run with time_zone='+00:00' and the binlog carries UTC); DATE → ISO; TIME → signed
'[-]HH:MM:SS[.ffffff]' (hours may exceed 24); binary strings → base64; SET → sorted list;
JSON → the JSON text; BIT → integer; FLOAT → the 6 significant digits MySQL shows; zero and
partly zero dates → None; YEAR 0000 → 0 (docs/TYPES.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from sources.schema import Column

Converter = Callable[[Any], Any]

GEOMETRY_TYPES = frozenset(
    {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
     "multipolygon", "geometrycollection", "geomcollection"}
)  # fmt: skip
_BINARY_TYPES = frozenset({"binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob"})
_BINARY_TYPES |= GEOMETRY_TYPES


def _time(v: Any) -> Any:
    if isinstance(v, dt.timedelta):
        total_us = v // dt.timedelta(microseconds=1)
        sign = "-" if total_us < 0 else ""
        total_us = abs(total_us)
        secs, us = divmod(total_us, 1_000_000)
        h, rem = divmod(secs, 3600)
        m, s = divmod(rem, 60)
        return f"{sign}{h:02d}:{m:02d}:{s:02d}" + (f".{us:06d}" if us else "")
    if isinstance(v, dt.time):
        return v.isoformat()
    return v


def _datetime(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None).isoformat()
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day).isoformat()
    return _invalid_date(v)


def _timestamp(v: Any) -> Any:
    # The zero TIMESTAMP is stored as 0 seconds after the epoch: the binlog reader gives it as
    # 1970-01-01 00:00:00, a SELECT as '0000-00-00 00:00:00'. (The first valid TIMESTAMP is
    # 1970-01-01 00:00:01 UTC.)
    if isinstance(v, dt.datetime) and v.replace(tzinfo=None) == _ZERO_TIMESTAMP:
        return None
    return _datetime(v)


_ZERO_TIMESTAMP = dt.datetime(1970, 1, 1)


def _date(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.date) else _invalid_date(v)


def _invalid_date(v: Any) -> Any:
    """A zero or partly zero date ('0000-00-00', '2020-00-15'), which only a sql_mode without
    NO_ZERO_DATE/NO_ZERO_IN_DATE lets in: PyMySQL returns its text, the binlog reader ``None``.
    Both become ``None`` (docs/TYPES.md): no target date type holds it."""
    return None if isinstance(v, str | bytes | bytearray) else v


def _year(v: Any) -> Any:
    # YEAR is one byte, 0 meaning 0000 and 1-255 meaning 1901-2155; the binlog reader adds 1900
    # to every byte, so the year 0000 arrives as 1900 (a year YEAR cannot hold).
    return 0 if v == 1900 else v


def _decimal(v: Any) -> Any:
    return str(v) if isinstance(v, decimal.Decimal | int | float) else v


def _binary(v: Any) -> Any:
    if isinstance(v, str):
        v = v.encode("latin-1")
    return base64.b64encode(v).decode("ascii") if isinstance(v, bytes | bytearray) else v


def _text(v: Any) -> Any:
    # Invalid UTF-8 (a column whose charset the reader did not know) must not stop the job.
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes | bytearray) else v


def _set(v: Any) -> Any:
    if isinstance(v, set | frozenset | list | tuple):
        return sorted(v)
    if isinstance(v, str):
        return sorted(x for x in v.split(",") if x)
    return v


def _bit(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        return int.from_bytes(v, "big")
    if isinstance(v, str):
        return int(v, 2)
    return v


def _unbytes(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        return _text(v)
    if isinstance(v, dict):
        return {_unbytes(k): _unbytes(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_unbytes(x) for x in v]
    return v


def _json(v: Any) -> Any:
    # MariaDB sends JSON as text; MySQL's binlog is decoded into objects with bytes inside.
    if isinstance(v, dict | list):
        return json.dumps(_unbytes(v))
    return _text(v)


def _float(v: Any) -> Any:
    # A snapshot SELECT shows FLOAT with 6 significant digits; the binlog gives the widened
    # single-precision value (1.1 → 1.100000023841858). Both become what MySQL shows.
    return float(f"{float(v):.6g}") if isinstance(v, float | decimal.Decimal | int) else v


def _double(v: Any) -> Any:
    return float(v) if isinstance(v, decimal.Decimal) else v


def _identity(v: Any) -> Any:
    return v


def _unknown(v: Any) -> Any:
    """A type sluice does not map (sources/table_map.py says "unknown"): JSON-safe at least."""
    if isinstance(v, bytes | bytearray):
        return _binary(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.date | dt.time | dt.timedelta):
        return _time(v) if isinstance(v, dt.timedelta) else v.isoformat()
    if isinstance(v, set | frozenset):
        return sorted(v)
    return v


def _padded_binary(length: int) -> Converter:
    def convert(v: Any) -> Any:
        # The binlog drops BINARY(n)'s trailing zero bytes; a SELECT returns all n bytes. An
        # all-zero value arrives from the binlog as '' (text), so text is turned to bytes first.
        if isinstance(v, str):
            v = v.encode("latin-1")
        if isinstance(v, bytes | bytearray) and len(v) < length:
            v = bytes(v) + b"\x00" * (length - len(v))
        return _binary(v)

    return convert


def converter_for(column: Column) -> Converter:
    t = column.data_type
    if t == "binary":
        m = re.search(r"\((\d+)\)", column.column_type)
        return _padded_binary(int(m.group(1)) if m else 1)
    if t == "datetime":
        return _datetime
    if t == "timestamp":
        return _timestamp
    if t == "year":
        return _year
    if t == "date":
        return _date
    if t == "time":
        return _time
    if t == "decimal":
        return _decimal
    if t in _BINARY_TYPES:
        return _binary
    if t == "set":
        return _set
    if t == "bit":
        return _bit
    if t == "json":
        return _json
    if t == "float":
        return _float
    if t in ("double", "real"):
        return _double
    if t.endswith("char") or t.endswith("text") or t == "enum":
        return _text
    if t == "unknown":
        return _unknown
    return _identity


def row_normaliser(columns: Sequence[Column]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function turning a row dict (by column name) into its JSON-safe form."""
    convs = [(c.name, converter_for(c)) for c in columns]

    def normalise(row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, conv in convs:
            v = row.get(name)
            out[name] = None if v is None else conv(v)
        return out

    return normalise
