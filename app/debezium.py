"""sluice change events as Debezium's MySQL connector writes them, through Kafka's JSON converter.

Pure functions (no I/O): one sluice change event (see app/records.py) plus its batch's database,
table and schema becomes the record(s) Debezium would have produced for the same row change:

* the key ``{"id": ...}`` (the primary-key columns) and the value envelope
  ``{"before", "after", "source", "op", "ts_ms", "ts_us", "ts_ns", "transaction": null}``;
* with ``schemas_enable`` (Kafka ``JsonConverter`` ``schemas.enable=true``) each one wrapped as
  ``{"schema": {...}, "payload": {...}}``, otherwise the payload alone;
* after a delete, a tombstone (same key, ``None`` value) when ``tombstones_on_delete``;
* on the topic ``<prefix>.<database>.<table>`` (:func:`topic_name`).

Values follow Debezium's defaults plus ``decimal.handling.mode=string``:
``time.precision.mode=adaptive_time_microseconds``, ``bigint.unsigned.handling.mode=long``,
``binary.handling.mode=bytes``. The mapping from sluice's normalised values (sources/values.py)
is the table in docs/CHANGE_EVENTS.md; it was checked against Debezium's source
(``BinlogValueConverters``, ``JdbcValueConverters``, ``SchemaFactory``) and documented examples
(tests/unit/debezium_examples/). Schema type names are the JSON converter's: FLOAT32 is written
``"float"`` and FLOAT64 ``"double"``.

What sluice does not know, and so never emits, is listed in docs/CHANGE_EVENTS.md: column default
values in the schema, ``thread``, ``query``, transaction metadata, and the
``__debezium.oldkey``/``__debezium.newkey`` headers of a primary-key change.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

import orjson

from app.records import ChangeBatch
from sources.schema import Column, TableSchema

Json = dict[str, Any]
SnapshotMarker = Literal[
    "true",
    "first",
    "first_in_data_collection",
    "last_in_data_collection",
    "last",
    "false",
    "incremental",
]
DecimalHandlingMode = Literal["string", "precise", "double"]
BigintUnsignedHandlingMode = Literal["long", "precise"]
BinaryHandlingMode = Literal["bytes", "base64", "base64-url-safe", "hex"]
KeylessTableKey = Literal["none", "row"]


def _package_version() -> str:
    try:
        return metadata.version("sluice")
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        return "0+unknown"


#: ``source.version``: Debezium puts its own version there; we say who really wrote the event.
CONNECTOR_VERSION = f"sluice-{_package_version()}"
CONNECTOR = "mysql"
#: Debezium's ``SnapshotRecord`` values, in its order (the ``allowed`` parameter of the schema).
SNAPSHOT_MARKERS: tuple[SnapshotMarker, ...] = (
    "true",
    "first",
    "first_in_data_collection",
    "last_in_data_collection",
    "last",
    "false",
    "incremental",
)
ENVELOPE_SCHEMA_VERSION = 2  # Debezium ≥ 2.6 (ts_us/ts_ns added, DBZ-7107)

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
_MS = dt.timedelta(milliseconds=1)
_UINT64 = 1 << 64
_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class DebeziumOptions:
    """The connector settings the output depends on (Debezium property names in the comments)."""

    topic_prefix: str  # topic.prefix: the topic and schema-name prefix and ``source.name``
    schemas_enable: bool = True  # key/value converter schemas.enable
    tombstones_on_delete: bool = True  # tombstones.on.delete
    decimal_handling_mode: DecimalHandlingMode = "string"  # decimal.handling.mode
    bigint_unsigned_handling_mode: BigintUnsignedHandlingMode = "long"
    binary_handling_mode: BinaryHandlingMode = "bytes"  # binary.handling.mode
    # A table without a primary key: Debezium sends a null key ("none"); sluice itself keys
    # such rows by the whole row ("row"), which keeps per-row ordering on a partitioned topic.
    keyless_table_key: KeylessTableKey = "none"
    connector_version: str = CONNECTOR_VERSION


@dataclass(frozen=True)
class DebeziumRecord:
    """One Kafka record: the JSON converter's key and value (``None`` is a null key/value)."""

    topic: str
    key: Json | None
    value: Json | None

    def key_bytes(self) -> bytes | None:
        return None if self.key is None else orjson.dumps(self.key)

    def value_bytes(self) -> bytes | None:
        return None if self.value is None else orjson.dumps(self.value)


# --------------------------------------------------------------------------- names

_UNSAFE_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def topic_name(prefix: str, database: str, table: str) -> str:
    """``<prefix>.<database>.<table>``; characters Kafka forbids become '_' (as Debezium does)."""
    return _UNSAFE_TOPIC_CHARS.sub("_", f"{prefix}.{database}.{table}")


def _schema_name(prefix: str, database: str, table: str, suffix: str) -> str:
    return f"{prefix}.{database}.{table}.{suffix}"


# --------------------------------------------------------------------------- schema building


def _schema(
    type_: str,
    optional: bool,
    *,
    name: str | None = None,
    version: int | None = None,
    doc: str | None = None,
    parameters: Mapping[str, str] | None = None,
    default: Any = None,
    fields: Sequence[Json] | None = None,
) -> Json:
    """A Connect schema in the JSON converter's form and key order."""
    s: Json = {"type": type_}
    if fields is not None:
        s["fields"] = list(fields)
    s["optional"] = optional
    if name is not None:
        s["name"] = name
    if version is not None:
        s["version"] = version
    if doc is not None:
        s["doc"] = doc
    if parameters is not None:
        s["parameters"] = dict(parameters)
    if default is not None:
        s["default"] = default
    return s


def _field(name: str, schema: Json) -> Json:
    return {**schema, "field": name}


Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class ColumnMapping:
    """How one column appears in Debezium events: its schema (less ``optional``) and converter."""

    type: str
    convert: Converter
    name: str | None = None
    version: int | None = None
    doc: str | None = None
    parameters: Mapping[str, str] | None = None
    fields: tuple[Json, ...] | None = None

    def schema(self, optional: bool) -> Json:
        return _schema(
            self.type,
            optional,
            name=self.name,
            version=self.version,
            doc=self.doc,
            parameters=self.parameters,
            fields=self.fields,
        )


# --------------------------------------------------------------------------- column types

_ARGS = re.compile(r"\(([^)]*)\)")
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_TIME = re.compile(r"^(-)?(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")

_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_SPATIAL_TYPES = frozenset(
    {
        "geometry",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
        "geomcollection",
    }
)


def _type_args(column_type: str) -> list[str]:
    """``decimal(12,2) unsigned`` → ``["12", "2"]``; ``int`` → ``[]``."""
    m = _ARGS.search(column_type)
    return [a.strip() for a in m.group(1).split(",")] if m and m.group(1).strip() else []


def enum_options(column_type: str) -> list[str]:
    """The members of ``enum('a','b')`` / ``set('a','b')`` in definition order."""
    inner = column_type[column_type.find("(") + 1 : column_type.rfind(")")]
    return [m.group(1).replace("''", "'") for m in _QUOTED.finditer(inner)]


def _precision(column: Column) -> int:
    """The fractional-seconds precision of a DATETIME/TIMESTAMP/TIME column (0 when unstated)."""
    args = _type_args(column.column_type)
    return int(args[0]) if args and args[0].isdigit() else 0


def _identity(v: Any) -> Any:
    return v


def _to_int(v: Any) -> Any:
    return int(v) if isinstance(v, int | float | str | decimal.Decimal) else v


def _to_float(v: Any) -> Any:
    return float(v) if isinstance(v, int | float | str | decimal.Decimal) else v


def _to_str(v: Any) -> Any:
    return v if isinstance(v, str) else str(v)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(v: Any) -> bytes:
    """sluice carries binary values as base64 text; accept raw bytes too."""
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    return base64.b64decode(v)


def _twos_complement(n: int) -> bytes:
    """Java ``BigInteger.toByteArray()``: minimal big-endian two's complement."""
    bits = (n if n >= 0 else ~n).bit_length()
    return n.to_bytes(bits // 8 + 1, "big", signed=True)


def connect_decimal(value: decimal.Decimal, scale: int) -> str:
    """Kafka Connect ``Decimal`` in JSON: base64 of the unscaled value at ``scale``."""
    unscaled = int(value.scaleb(scale).to_integral_value(rounding=decimal.ROUND_HALF_UP))
    return _b64(_twos_complement(unscaled))


def _decimal_of(v: Any) -> decimal.Decimal:
    return v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))


def _plain_decimal(v: Any) -> Any:
    """``BigDecimal.toPlainString()``: never an exponent, the stored scale kept."""
    return format(_decimal_of(v), "f")


def _decimal_mapping(precision: int, scale: int, mode: DecimalHandlingMode) -> ColumnMapping:
    if mode == "string":
        return ColumnMapping("string", _plain_decimal)
    if mode == "double":
        return ColumnMapping("double", lambda v: float(_decimal_of(v)))
    return ColumnMapping(
        "bytes",
        lambda v: connect_decimal(_decimal_of(v), scale),
        name="org.apache.kafka.connect.data.Decimal",
        version=1,
        parameters={"scale": str(scale), "connect.decimal.precision": str(precision)},
    )


def _bigint_unsigned_long(v: Any) -> Any:
    """The binlog gives Debezium a signed long: values above 2^63-1 wrap to negatives."""
    n = int(v)
    return n - _UINT64 if n > _INT64_MAX else n


def _parse_datetime(v: Any) -> dt.datetime | None:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    try:
        return dt.datetime.fromisoformat(str(v)).replace(tzinfo=None)
    except ValueError:  # a zero date ('0000-00-00 00:00:00') the source let through
        return None


def _date_days(v: Any) -> int | None:
    """``io.debezium.time.Date``: days since 1970-01-01 (negative before)."""
    if isinstance(v, dt.datetime):
        v = v.date()
    if not isinstance(v, dt.date):
        try:
            v = dt.date.fromisoformat(str(v)[:10])
        except ValueError:
            return None
    return (v - EPOCH_DATE).days


def _epoch_millis(v: Any) -> int | None:
    """``io.debezium.time.Timestamp``: milliseconds since the epoch, the value read as UTC."""
    d = _parse_datetime(v)
    return None if d is None else (d - EPOCH) // _MS


def _epoch_micros(v: Any) -> int | None:
    """``io.debezium.time.MicroTimestamp``: microseconds since the epoch, read as UTC."""
    d = _parse_datetime(v)
    return None if d is None else (d - EPOCH) // _US


def zoned_timestamp(v: Any, fsp: int) -> str | None:
    """``io.debezium.time.ZonedTimestamp`` of a UTC TIMESTAMP: ISO-8601 ending in 'Z'.

    Like Debezium's formatter: exactly ``fsp`` fraction digits for TIMESTAMP(1..6); for
    TIMESTAMP(0) Java's ISO_OFFSET_DATE_TIME (a fraction only when non-zero, trailing zeros cut).
    """
    d = _parse_datetime(v)
    if d is None:
        return None
    text = d.replace(microsecond=0).isoformat()
    if fsp > 0:
        text += "." + f"{d.microsecond:06d}"[:fsp].ljust(fsp, "0")
    elif d.microsecond:
        text += "." + f"{d.microsecond:06d}".rstrip("0")
    return text + "Z"


def micro_time(v: Any) -> int | None:
    """``io.debezium.time.MicroTime``: signed microseconds (MySQL TIME spans ±838:59:59)."""
    if isinstance(v, dt.timedelta):
        return v // _US
    if isinstance(v, dt.time):
        return (v.hour * 3600 + v.minute * 60 + v.second) * 1_000_000 + v.microsecond
    m = _TIME.match(str(v))
    if m is None:
        return None
    sign, h, mi, s, frac = m.groups()
    us = (int(h) * 3600 + int(mi) * 60 + int(s)) * 1_000_000 + int((frac or "0").ljust(6, "0"))
    return -us if sign else us


def _bits(nbits: int) -> Converter:
    nbytes = nbits // 8 + (1 if nbits % 8 else 0)

    def convert(v: Any) -> str:
        # io.debezium.data.Bits: little-endian, padded to the column's bytes (BitSet.toByteArray)
        n = int.from_bytes(_unb64(v), "big") if isinstance(v, bytes | bytearray) else int(v)
        return _b64(n.to_bytes(nbytes, "little"))

    return convert


def _set_converter(options: list[str]) -> Converter:
    order = {o: i for i, o in enumerate(options)}

    def convert(v: Any) -> str:
        members = [x for x in v.split(",") if x] if isinstance(v, str) else list(v)
        # Definition order, as MySQL and Debezium write a SET; unknown members last.
        members.sort(key=lambda x: (order.get(x, len(order)), x))
        return ",".join(members)

    return convert


def _binary_converter(mode: BinaryHandlingMode) -> Converter:
    if mode in ("bytes", "base64"):
        return lambda v: _b64(_unb64(v)) if isinstance(v, bytes | bytearray) else v
    if mode == "hex":
        return lambda v: _unb64(v).hex()
    return lambda v: base64.urlsafe_b64encode(_unb64(v)).decode("ascii")


_GEOMETRY_FIELDS = (
    _field("wkb", _schema("bytes", False)),
    _field("srid", _schema("int32", True)),
)
_POINT_FIELDS = (
    _field("x", _schema("double", False)),
    _field("y", _schema("double", False)),
    _field("wkb", _schema("bytes", True)),
    _field("srid", _schema("int32", True)),
)


def _split_geometry(v: Any) -> tuple[bytes, int]:
    """MySQL's internal geometry value: 4-byte little-endian SRID, then WKB."""
    raw = _unb64(v)
    return raw[4:], int.from_bytes(raw[:4], "little")


def _geometry(v: Any) -> Json:
    wkb, srid = _split_geometry(v)
    return {"wkb": _b64(wkb), "srid": srid}


def _point(v: Any) -> Json:
    wkb, srid = _split_geometry(v)
    order = "<" if wkb[0] == 1 else ">"
    x, y = struct.unpack(order + "dd", wkb[5:21])
    return {"x": x, "y": y, "wkb": _b64(wkb), "srid": srid}


def column_mapping(column: Column, options: DebeziumOptions) -> ColumnMapping:
    """Debezium's schema and value conversion for one column, from its MySQL type."""
    t = column.data_type.lower()
    unsigned = column.unsigned
    if t == "tinyint":
        return ColumnMapping("int16" if unsigned else "int8", _to_int)
    if t == "smallint":
        return ColumnMapping("int32" if unsigned else "int16", _to_int)
    if t in ("mediumint", "int", "integer"):
        return ColumnMapping("int64" if unsigned and t != "mediumint" else "int32", _to_int)
    if t == "bigint":
        if not unsigned:
            return ColumnMapping("int64", _to_int)
        if options.bigint_unsigned_handling_mode == "long":
            return ColumnMapping("int64", _bigint_unsigned_long)
        return _decimal_mapping(20, 0, "precise")
    if t == "float":
        # FLOAT(M,D) has a scale and goes through JDBC FLOAT → FLOAT64.
        return ColumnMapping(
            "double" if len(_type_args(column.column_type)) == 2 else "float", _to_float
        )
    if t in ("double", "real"):
        return ColumnMapping("double", _to_float)
    if t in ("decimal", "numeric"):
        args = _type_args(column.column_type)
        precision = int(args[0]) if args else 10
        scale = int(args[1]) if len(args) > 1 else 0
        return _decimal_mapping(precision, scale, options.decimal_handling_mode)
    if t == "bit":
        args = _type_args(column.column_type)
        nbits = int(args[0]) if args else 1
        if nbits <= 1:
            return ColumnMapping("boolean", lambda v: bool(int(v)))
        return ColumnMapping(
            "bytes",
            _bits(nbits),
            name="io.debezium.data.Bits",
            version=1,
            parameters={"length": str(nbits)},
        )
    if t == "date":
        return ColumnMapping("int32", _date_days, name="io.debezium.time.Date", version=1)
    if t == "datetime":
        if _precision(column) <= 3:
            return ColumnMapping(
                "int64", _epoch_millis, name="io.debezium.time.Timestamp", version=1
            )
        return ColumnMapping(
            "int64", _epoch_micros, name="io.debezium.time.MicroTimestamp", version=1
        )
    if t == "timestamp":
        fsp = _precision(column)
        return ColumnMapping(
            "string",
            lambda v: zoned_timestamp(v, fsp),
            name="io.debezium.time.ZonedTimestamp",
            version=1,
        )
    if t == "time":
        return ColumnMapping("int64", micro_time, name="io.debezium.time.MicroTime", version=1)
    if t == "year":
        return ColumnMapping("int32", _to_int, name="io.debezium.time.Year", version=1)
    if t == "enum":
        allowed = ",".join(enum_options(column.column_type))
        return ColumnMapping(
            "string",
            _to_str,
            name="io.debezium.data.Enum",
            version=1,
            parameters={"allowed": allowed},
        )
    if t == "set":
        members = enum_options(column.column_type)
        return ColumnMapping(
            "string",
            _set_converter(members),
            name="io.debezium.data.EnumSet",
            version=1,
            parameters={"allowed": ",".join(members)},
        )
    if t == "json":
        return ColumnMapping("string", _to_str, name="io.debezium.data.Json", version=1)
    if t in _BINARY_TYPES:
        conv = _binary_converter(options.binary_handling_mode)
        return ColumnMapping("bytes" if options.binary_handling_mode == "bytes" else "string", conv)
    if t == "point":
        return ColumnMapping(
            "struct",
            _point,
            name="io.debezium.data.geometry.Point",
            version=1,
            doc="Geometry (POINT)",
            fields=_POINT_FIELDS,
        )
    if t in _SPATIAL_TYPES:
        return ColumnMapping(
            "struct",
            _geometry,
            name="io.debezium.data.geometry.Geometry",
            version=1,
            doc="Geometry",
            fields=_GEOMETRY_FIELDS,
        )
    # char, varchar, *text and anything unknown: a string, as Debezium's JDBC fallback.
    return ColumnMapping("string", _to_str)


def _zero_value(mapping: ColumnMapping) -> Any:
    """What Debezium sends for a NOT NULL temporal column holding a zero date: the epoch."""
    if mapping.name == "io.debezium.time.ZonedTimestamp":
        return "1970-01-01T00:00:00Z"
    return 0


def column_schema(column: Column, options: DebeziumOptions) -> Json:
    """The struct field entry of one column: ``{"type", "optional", ..., "field"}``."""
    return _field(column.name, column_mapping(column, options).schema(column.nullable))


def convert_value(column: Column, value: Any, options: DebeziumOptions) -> Any:
    """One sluice-normalised column value as Debezium writes it in JSON."""
    return _convert(column, column_mapping(column, options), value)


def _convert(column: Column, mapping: ColumnMapping, value: Any) -> Any:
    if value is None:
        return None
    out = mapping.convert(value)
    if out is None and not column.nullable:
        return _zero_value(mapping)
    return out


# --------------------------------------------------------------------------- source and envelope


def source_schema() -> Json:
    """``io.debezium.connector.mysql.Source`` (field order of SchemaFactory + BinlogSource)."""
    snapshot = _schema(
        "string",
        True,
        name="io.debezium.data.Enum",
        version=1,
        parameters={"allowed": ",".join(SNAPSHOT_MARKERS)},
        default="false",
    )
    fields = [
        _field("version", _schema("string", False)),
        _field("connector", _schema("string", False)),
        _field("name", _schema("string", False)),
        _field("ts_ms", _schema("int64", False)),
        _field("snapshot", snapshot),
        _field("db", _schema("string", False)),
        _field("sequence", _schema("string", True)),
        _field("ts_us", _schema("int64", True)),
        _field("ts_ns", _schema("int64", True)),
        _field("table", _schema("string", True)),
        _field("server_id", _schema("int64", False)),
        _field("gtid", _schema("string", True)),
        _field("file", _schema("string", False)),
        _field("pos", _schema("int64", False)),
        _field("row", _schema("int32", False)),
        _field("thread", _schema("int64", True)),
        _field("query", _schema("string", True)),
    ]
    return _schema(
        "struct", False, name=f"io.debezium.connector.{CONNECTOR}.Source", version=1, fields=fields
    )


def transaction_schema() -> Json:
    """The envelope's ``transaction`` block (always null: no transaction metadata is sent)."""
    fields = [
        _field("id", _schema("string", False)),
        _field("total_order", _schema("int64", False)),
        _field("data_collection_order", _schema("int64", False)),
    ]
    return _schema("struct", True, name="event.block", version=1, fields=fields)


def _as_table_schema(
    database: str, table: str, schema: TableSchema | Mapping[str, Any]
) -> TableSchema:
    if isinstance(schema, TableSchema):
        return schema
    return TableSchema.from_json(database, table, dict(schema))


def _key_columns(schema: TableSchema, options: DebeziumOptions) -> tuple[str, ...]:
    if schema.primary_key:
        return schema.primary_key
    return schema.column_names if options.keyless_table_key == "row" else ()


def snapshot_marker(event: Mapping[str, Any]) -> SnapshotMarker:
    """``source.snapshot`` of an event: sluice's boolean as Debezium's enum string."""
    return "true" if (event.get("source") or {}).get("snapshot") else "false"


class DebeziumTable:
    """One table's Debezium schemas and converters, built once and used for each of its events."""

    def __init__(
        self,
        database: str,
        table: str,
        schema: TableSchema | Mapping[str, Any],
        options: DebeziumOptions,
    ) -> None:
        self.database = database
        self.table = table
        self.options = options
        self.schema = _as_table_schema(database, table, schema)
        self.topic = topic_name(options.topic_prefix, database, table)
        self._mappings = {c.name: (c, column_mapping(c, options)) for c in self.schema.columns}
        prefix = options.topic_prefix
        self.row_schema = _schema(
            "struct",
            True,
            name=_schema_name(prefix, database, table, "Value"),
            fields=[_field(c.name, m.schema(c.nullable)) for c, m in self._mappings.values()],
        )
        self.key_columns = _key_columns(self.schema, options)
        self.key_schema: Json | None = None
        if self.key_columns:
            self.key_schema = _schema(
                "struct",
                False,
                name=_schema_name(prefix, database, table, "Key"),
                fields=[
                    _field(n, self._mappings[n][1].schema(self._mappings[n][0].nullable))
                    for n in self.key_columns
                ],
            )
        self.value_schema = _schema(
            "struct",
            False,
            name=_schema_name(prefix, database, table, "Envelope"),
            version=ENVELOPE_SCHEMA_VERSION,
            fields=[
                _field("before", self.row_schema),
                _field("after", self.row_schema),
                _field("source", source_schema()),
                _field("op", _schema("string", False)),
                _field("ts_ms", _schema("int64", True)),
                _field("ts_us", _schema("int64", True)),
                _field("ts_ns", _schema("int64", True)),
                _field("transaction", transaction_schema()),
            ],
        )

    # ---- payloads

    def row(self, row: Mapping[str, Any] | None) -> Json | None:
        """A ``before``/``after`` image; columns the schema does not know are dropped."""
        if row is None:
            return None
        return {name: _convert(c, m, row.get(name)) for name, (c, m) in self._mappings.items()}

    def key(self, event: Mapping[str, Any]) -> Json | None:
        """The key payload, from the event's key and, for columns it lacks, its row image."""
        if not self.key_columns:
            return None
        image = event.get("after") if event.get("after") is not None else event.get("before")
        key = event.get("key") or {}
        out: Json = {}
        for name in self.key_columns:
            column, mapping = self._mappings[name]
            raw = key[name] if name in key else (image or {}).get(name)
            out[name] = _convert(column, mapping, raw)
        return out

    def source(self, event: Mapping[str, Any], snapshot: SnapshotMarker | None = None) -> Json:
        src = event.get("source") or {}
        ts_ms = int(src.get("ts_ms") or 0)
        return {
            "version": self.options.connector_version,
            "connector": CONNECTOR,
            "name": self.options.topic_prefix,
            "ts_ms": ts_ms,
            "snapshot": snapshot or snapshot_marker(event),
            "db": self.database,
            "sequence": None,
            "ts_us": ts_ms * 1_000,
            "ts_ns": ts_ms * 1_000_000,
            "table": self.table,
            "server_id": int(src.get("server_id") or 0),
            "gtid": src.get("gtid"),
            "file": str(src.get("file") or ""),
            "pos": int(src.get("pos") or 0),
            "row": int(src.get("row") or 0),
            "thread": None,
            "query": None,
        }

    def envelope(
        self,
        event: Mapping[str, Any],
        *,
        ts_ms: int | None = None,
        snapshot: SnapshotMarker | None = None,
    ) -> Json:
        """The value payload. ``ts_ms``: when the event was converted (default: now)."""
        op = event["op"]
        if op not in ("c", "u", "d", "r", "t"):
            raise ValueError(f"not a change event op: {op!r}")
        now_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
        return {
            "before": self.row(event.get("before")),
            "after": self.row(event.get("after")),
            "source": self.source(event, snapshot),
            "op": op,
            "ts_ms": now_ms,
            "ts_us": now_ms * 1_000,
            "ts_ns": now_ms * 1_000_000,
            "transaction": None,
        }

    # ---- records

    def records(
        self,
        event: Mapping[str, Any],
        *,
        ts_ms: int | None = None,
        snapshot: SnapshotMarker | None = None,
    ) -> list[DebeziumRecord]:
        """The record of one event, and after a delete its tombstone when the options say so.

        A truncate (op "t") becomes Debezium's truncate event, with no key and no row images.
        A schema change (op "s") has no record here: Debezium reports DDL on its own
        schema-change topic, not in the table's topic.
        """
        if event["op"] == "s":
            return []
        if event["op"] == "t":
            value = self.envelope(event, ts_ms=ts_ms, snapshot=snapshot)
            return [DebeziumRecord(self.topic, None, self._wrap(self.value_schema, value))]
        key = self.key(event)
        value = self.envelope(event, ts_ms=ts_ms, snapshot=snapshot)
        key_json = self._wrap(self.key_schema, key) if key is not None else None
        out = [DebeziumRecord(self.topic, key_json, self._wrap(self.value_schema, value))]
        if event["op"] == "d" and self.options.tombstones_on_delete:
            out.append(DebeziumRecord(self.topic, key_json, None))
        return out

    def _wrap(self, schema: Json | None, payload: Json) -> Json:
        if not self.options.schemas_enable:
            return payload
        return {"schema": schema, "payload": payload}


# --------------------------------------------------------------------------- one-shot functions


def key_schema(
    database: str, table: str, schema: TableSchema | Mapping[str, Any], options: DebeziumOptions
) -> Json | None:
    """The key's Connect schema (``None`` when the table has no key columns)."""
    return DebeziumTable(database, table, schema, options).key_schema


def value_schema(
    database: str, table: str, schema: TableSchema | Mapping[str, Any], options: DebeziumOptions
) -> Json:
    """The value envelope's Connect schema."""
    return DebeziumTable(database, table, schema, options).value_schema


def change_event_records(
    database: str,
    table: str,
    schema: TableSchema | Mapping[str, Any],
    event: Mapping[str, Any],
    options: DebeziumOptions,
    *,
    ts_ms: int | None = None,
    snapshot: SnapshotMarker | None = None,
) -> list[DebeziumRecord]:
    """The Debezium record(s) of one sluice change event (see :meth:`DebeziumTable.records`)."""
    return DebeziumTable(database, table, schema, options).records(
        event, ts_ms=ts_ms, snapshot=snapshot
    )


def batch_records(
    batch: ChangeBatch, options: DebeziumOptions, *, ts_ms: int | None = None
) -> list[DebeziumRecord]:
    """Every record of one decoded sluice CDC message, in event order."""
    table = DebeziumTable(batch.database, batch.table, batch.schema, options)
    out: list[DebeziumRecord] = []
    for event in batch.events:
        out.extend(table.records(event, ts_ms=ts_ms))
    return out
