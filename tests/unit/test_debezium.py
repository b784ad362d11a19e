"""app/debezium.py against Debezium's published MySQL events, and each value conversion.

The examples (tests/unit/debezium_examples/, sources in its README) are compared field by field.
Differences are allowed only where listed here, each with its reason:

* ``ENVIRONMENT_SPECIFIC_SOURCE_FIELDS`` / ``ENVIRONMENT_SPECIFIC_ENVELOPE_FIELDS``: values that
  depend on where and when an event was made (same JSON type required);
* ``NOT_CAPTURED_SOURCE_FIELDS``: what sluice does not know and sends as null;
* ``DOC_LAGS_CODE``: where a hand-written documentation listing shows an older form than
  Debezium's code writes; we follow the code (debezium/debezium @ aad5519).
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import decimal
import json
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.debezium import (
    CONNECTOR_VERSION,
    DebeziumOptions,
    DebeziumRecord,
    DebeziumTable,
    batch_records,
    change_event_records,
    column_schema,
    convert_value,
    enum_options,
    key_schema,
    topic_name,
    value_schema,
)
from app.records import ChangeBatch
from sources.position import BinlogPosition
from sources.schema import Column
from sources.values import row_normaliser

Json = dict[str, Any]
EXAMPLES = Path(__file__).parent / "debezium_examples"

# Source fields whose values depend on the server, connector build and clock that made the event.
ENVIRONMENT_SPECIFIC_SOURCE_FIELDS = frozenset(
    {"version", "name", "ts_ms", "ts_us", "ts_ns", "server_id", "file", "pos"}
)
# Envelope fields set from the converting process's clock.
ENVIRONMENT_SPECIFIC_ENVELOPE_FIELDS = frozenset({"ts_ms", "ts_us", "ts_ns"})
# The listings' connector ran with include.query=true and reports the MySQL session thread id;
# sluice captures neither and sends null (as Debezium does with include.query=false / snapshots).
NOT_CAPTURED_SOURCE_FIELDS = frozenset({"thread", "query"})
# Where the documentation's hand-written listings lag Debezium's code.
DOC_LAGS_CODE = {
    "transaction": "SchemaFactory.datatypeEnvelopeSchema always adds the optional `transaction` "
    "struct (null without transaction metadata); the customers listings leave it out",
    "transaction.name": "named `event.block` since DBZ-5044 (Debezium 2.0); older listings unnamed",
    "source.snapshot": "an io.debezium.data.Enum string ('true'/'last'/'false'/...) "
    "(SchemaFactory.snapshotRecordSchema); the customers create listing shows an old boolean",
    "source.snapshot.allowed": "every SnapshotRecord value since DBZ-5136 (Debezium 2.0); "
    "older listings show 'true,last,false'",
    "source.sequence": "in SchemaFactory.sourceInfoSchemaBuilder; the customers listing omits it",
    "source.ts_us/ts_ns optional": "optional since DBZ-7880 (2024-05); listings show them required",
}


def example(name: str) -> Json:
    data: Json = json.loads((EXAMPLES / name).read_text())
    return data


def value_of(record: DebeziumRecord) -> Json:
    assert record.value is not None
    return record.value


def key_of(record: DebeziumRecord) -> Json:
    assert record.key is not None
    return record.key


def fields_of(schema: Json) -> dict[str, Json]:
    return {f["field"]: f for f in schema["fields"]}


def structure(schema: Json) -> Json:
    """What a schema comparison covers: type, optional flag, logical name, fields in order."""
    out: Json = {"type": schema["type"], "optional": schema["optional"], "name": schema.get("name")}
    if "fields" in schema:
        out["fields"] = [(f["field"], structure(f)) for f in schema["fields"]]
    return out


def snapshot_text(v: Any) -> str:
    """The create listing's boolean ``snapshot`` read as the Enum string the code writes."""
    return v if isinstance(v, str) else ("true" if v else "false")


# --------------------------------------------------------------------------- the example tables

CUSTOMERS_SCHEMA = {
    "columns": [
        ["id", "int", "int(11)", False],
        ["first_name", "varchar", "varchar(255)", False],
        ["last_name", "varchar", "varchar(255)", False],
        ["email", "varchar", "varchar(255)", False],
    ],
    "pk": ["id"],
}
PRODUCTS_ON_HAND_SCHEMA = {
    "columns": [["product_id", "int", "int(11)", False], ["quantity", "int", "int(11)", False]],
    "pk": ["product_id"],
}
PREFIX = "mysql-server-1"
OPTIONS = DebeziumOptions(topic_prefix=PREFIX)
NOW_MS = 1_700_000_000_123


def internal_event(
    op: str,
    before: Json | None,
    after: Json | None,
    source: Json,
    key_columns: tuple[str, ...] = ("id",),
    snapshot: bool = False,
) -> Json:
    """A sluice change event as sources/job.py builds it, at the example's binlog coordinates."""
    image = after if after is not None else before
    assert image is not None
    pos = BinlogPosition.at(source["file"], source["pos"], source["row"])
    return {
        "op": op,
        "key": {c: image[c] for c in key_columns},
        "before": before,
        "after": after,
        "pos": pos.key(),
        "source": {
            "server_id": source["server_id"],
            "file": source["file"],
            "pos": source["pos"],
            "row": source["row"],
            "ts_ms": source["ts_ms"],
            "snapshot": snapshot,
        },
    }


def customers(event: Json) -> list[Any]:
    return change_event_records(
        "inventory", "customers", CUSTOMERS_SCHEMA, event, OPTIONS, ts_ms=NOW_MS
    )


def assert_source_matches(ours: Json, theirs: Json) -> None:
    for name, value in theirs.items():
        assert name in ours, name
        if name in ENVIRONMENT_SPECIFIC_SOURCE_FIELDS:
            assert type(ours[name]) is type(value), name
        elif name in NOT_CAPTURED_SOURCE_FIELDS:
            assert ours[name] is None, name
        elif name == "snapshot":
            assert ours[name] == snapshot_text(value)  # DOC_LAGS_CODE["source.snapshot"]
        else:
            assert ours[name] == value, name
    # What we add beyond the listing: only fields the code has and the listing left out.
    assert set(ours) - set(theirs) <= {"sequence", "ts_us", "ts_ns"}
    assert ours["version"] == CONNECTOR_VERSION
    assert ours["connector"] == "mysql"


def assert_envelope_matches(ours: Json, theirs: Json) -> None:
    assert set(ours) - set(theirs) <= {"transaction", "ts_us", "ts_ns"}  # DOC_LAGS_CODE
    assert set(theirs) <= set(ours)
    assert ours["transaction"] is None
    assert ours["op"] == theirs["op"]
    assert ours["before"] == theirs["before"]
    assert ours["after"] == theirs["after"]
    for name in ENVIRONMENT_SPECIFIC_ENVELOPE_FIELDS & set(theirs):
        assert type(ours[name]) is type(theirs[name])
    assert_source_matches(ours["source"], theirs["source"])


# --------------------------------------------------------------------------- keys


def test_key_matches_the_documented_customers_key() -> None:
    theirs = example("mysql_customers_key.json")
    after = {"id": 1001, "first_name": "Sally", "last_name": "Thomas", "email": "s@acme.com"}
    src = {"server_id": 0, "file": "mysql-bin.000003", "pos": 154, "row": 0, "ts_ms": 0}
    [record] = customers(internal_event("r", None, after, src, snapshot=True))
    assert record.key == theirs  # schema and payload, exactly
    assert record.topic == "mysql-server-1.inventory.customers"


def test_key_matches_the_documented_products_on_hand_key() -> None:
    theirs = example("mysql_products_on_hand_read_key.json")
    options = DebeziumOptions(topic_prefix="inventory-connector-mysql")
    src = {"server_id": 0, "file": "mysql-bin.000003", "pos": 156, "row": 0, "ts_ms": 0}
    event = internal_event(
        "r", None, {"product_id": 101, "quantity": 3}, src, ("product_id",), snapshot=True
    )
    [record] = change_event_records(
        "inventory", "products_on_hand", PRODUCTS_ON_HAND_SCHEMA, event, options
    )
    assert record.key == theirs


# --------------------------------------------------------------------------- values


def test_create_event_matches_the_documented_create_event() -> None:
    theirs = example("mysql_customers_create.json")
    src = theirs["payload"]["source"]
    after = theirs["payload"]["after"]
    [record] = customers(internal_event("c", None, after, src))
    assert set(value_of(record)) == {"schema", "payload"}
    assert_envelope_matches(value_of(record)["payload"], theirs["payload"])

    ours_schema, their_schema = value_of(record)["schema"], theirs["schema"]
    assert (
        ours_schema["name"] == their_schema["name"] == "mysql-server-1.inventory.customers.Envelope"
    )
    assert ours_schema["optional"] is their_schema["optional"] is False
    ours_fields, their_fields = fields_of(ours_schema), fields_of(their_schema)
    assert list(ours_fields) == [*their_fields, "transaction"]  # DOC_LAGS_CODE["transaction"]
    for name in ("before", "after"):
        assert ours_fields[name] == their_fields[name]  # the row struct, exactly
    for name in ("op", "ts_ms", "ts_us", "ts_ns"):
        assert ours_fields[name] == their_fields[name]

    ours_src, their_src = ours_fields["source"], their_fields["source"]
    assert ours_src["name"] == their_src["name"] == "io.debezium.connector.mysql.Source"
    assert ours_src["optional"] is their_src["optional"] is False
    ours_sf, their_sf = fields_of(ours_src), fields_of(their_src)
    assert set(ours_sf) - set(their_sf) == {"sequence"}  # DOC_LAGS_CODE["source.sequence"]
    assert set(their_sf) <= set(ours_sf)
    for name, theirs_f in their_sf.items():
        if name == "snapshot":  # DOC_LAGS_CODE["source.snapshot"]
            assert theirs_f["type"] == "boolean"
            assert ours_sf[name]["type"] == "string"
            assert ours_sf[name]["name"] == "io.debezium.data.Enum"
            assert ours_sf[name]["default"] == "false"
        elif name in ("ts_us", "ts_ns"):  # DOC_LAGS_CODE["source.ts_us/ts_ns optional"]
            assert theirs_f["optional"] is False and ours_sf[name]["optional"] is True
            assert ours_sf[name]["type"] == theirs_f["type"]
        else:
            assert structure(ours_sf[name]) == structure(theirs_f), name


def test_update_event_matches_the_documented_update_event() -> None:
    theirs = example("mysql_customers_update.json")["payload"]
    event = internal_event("u", theirs["before"], theirs["after"], theirs["source"])
    [record] = customers(event)
    assert_envelope_matches(value_of(record)["payload"], theirs)
    # "The value of a change event for an update ... has the same schema as a create event"
    create = customers(internal_event("c", None, theirs["after"], theirs["source"]))[0]
    assert value_of(record)["schema"] == value_of(create)["schema"]
    assert key_of(record)["payload"] == {"id": 1004}


def test_delete_event_matches_the_documented_delete_event_and_is_followed_by_a_tombstone() -> None:
    theirs = example("mysql_customers_delete.json")["payload"]
    delete, tombstone = customers(internal_event("d", theirs["before"], None, theirs["source"]))
    assert_envelope_matches(value_of(delete)["payload"], theirs)
    assert key_of(delete)["payload"] == {"id": 1004}
    # "the connector emits a special tombstone event that has the same key but a null value"
    assert tombstone.key == delete.key
    assert tombstone.value is None
    assert tombstone.value_bytes() is None
    assert tombstone.topic == delete.topic


def test_snapshot_read_event_matches_the_documented_products_on_hand_event() -> None:
    theirs = example("mysql_products_on_hand_read.json")
    options = DebeziumOptions(topic_prefix="inventory-connector-mysql")
    src = theirs["payload"]["source"]
    event = internal_event(
        "r", None, theirs["payload"]["after"], src, ("product_id",), snapshot=True
    )
    [record] = change_event_records(
        "inventory", "products_on_hand", PRODUCTS_ON_HAND_SCHEMA, event, options, ts_ms=NOW_MS
    )
    ours = value_of(record)
    assert list(ours["payload"]) == list(theirs["payload"])  # same envelope keys, same order
    assert_envelope_matches(ours["payload"], theirs["payload"])
    assert ours["payload"]["source"]["snapshot"] == "true"

    ours_fields, their_fields = fields_of(ours["schema"]), fields_of(theirs["schema"])
    assert list(ours_fields) == list(their_fields)
    assert ours["schema"]["name"] == theirs["schema"]["name"]
    for name in ("before", "after", "op", "ts_ms", "ts_us", "ts_ns"):
        assert ours_fields[name] == their_fields[name], name
    ours_tx, their_tx = ours_fields["transaction"], their_fields["transaction"]
    assert ours_tx["name"] == "event.block" and "name" not in their_tx  # DOC_LAGS_CODE
    assert ours_tx["fields"] == their_tx["fields"]
    assert ours_tx["optional"] is their_tx["optional"] is True

    ours_sf, their_sf = fields_of(ours_fields["source"]), fields_of(their_fields["source"])
    assert set(ours_sf) == set(their_sf)
    for name, theirs_f in their_sf.items():
        mine = ours_sf[name]
        if name == "snapshot":  # DOC_LAGS_CODE["source.snapshot.allowed"]
            assert {k: v for k, v in mine.items() if k != "parameters"} == {
                k: v for k, v in theirs_f.items() if k != "parameters"
            }
            assert set(theirs_f["parameters"]["allowed"].split(",")) < set(
                mine["parameters"]["allowed"].split(",")
            )
        elif name in ("ts_us", "ts_ns"):  # DOC_LAGS_CODE["source.ts_us/ts_ns optional"]
            assert mine["type"] == theirs_f["type"] and mine["optional"] is True
        else:
            assert mine == theirs_f, name


def test_recorded_debezium_event_from_flink_test_data() -> None:
    """A real Debezium 1.1.1 recording: same row values and JSON-converter schema spelling."""
    theirs = example("flink_debezium_products_snapshot.json")
    schema: Json = {
        "columns": [
            ["id", "int", "int(11)", False],
            ["name", "varchar", "varchar(255)", False],
            ["description", "varchar", "varchar(512)", True],
            ["weight", "float", "float", True],
        ],
        "pk": ["id"],
    }
    # What sluice's normaliser makes of the binlog's float (6 significant digits, as MySQL shows).
    after = row_normaliser([Column.from_json(c) for c in schema["columns"]])(
        {**theirs["payload"]["after"], "weight": struct.unpack("<f", struct.pack("<f", 3.14))[0]}
    )
    src = theirs["payload"]["source"]
    event = internal_event("c", None, after, src, snapshot=True)
    [record] = change_event_records(
        "inventory", "products", schema, event, DebeziumOptions(topic_prefix="dbserver1")
    )
    ours = value_of(record)
    mine_after, their_after = ours["payload"]["after"], theirs["payload"]["after"]
    assert {k: v for k, v in mine_after.items() if k != "weight"} == {
        k: v for k, v in their_after.items() if k != "weight"
    }
    # Debezium 1.1 sent FLOAT as FLOAT64 (the float widened: 3.140000104904175, schema "double");
    # Debezium ≥ 2 sends FLOAT as FLOAT32 (schema "float"), which Jackson writes as 3.14.
    assert their_fields_type(theirs, "weight") == "double"
    assert their_fields_type(ours, "weight") == "float"
    assert mine_after["weight"] == 3.14
    assert struct.pack("<f", mine_after["weight"]) == struct.pack("<f", their_after["weight"])
    for name in ("id", "name", "description"):
        assert their_fields_type(ours, name) == their_fields_type(theirs, name)
    assert_source_matches(ours["payload"]["source"], theirs["payload"]["source"])
    assert ours["payload"]["source"]["snapshot"] == "true"
    assert ours["payload"]["transaction"] is theirs["payload"]["transaction"] is None


def their_fields_type(record: Json, column: str) -> str:
    row = fields_of(fields_of(record["schema"])["after"])
    t: str = row[column]["type"]
    return t


# --------------------------------------------------------------------------- envelope options


SRC = {"server_id": 7, "file": "binlog.000042", "pos": 1234, "row": 2, "ts_ms": 1_600_000_000_000}
ROW = {"id": 1, "first_name": "A", "last_name": "B", "email": "a@b"}


def test_schemas_disabled_gives_the_payloads_alone() -> None:
    options = DebeziumOptions(topic_prefix="p", schemas_enable=False)
    [record] = change_event_records(
        "inventory", "customers", CUSTOMERS_SCHEMA, internal_event("c", None, ROW, SRC), options
    )
    assert record.key == {"id": 1}
    assert set(value_of(record)) == {
        "before", "after", "source", "op", "ts_ms", "ts_us", "ts_ns", "transaction"
    }  # fmt: skip
    assert value_of(record)["after"] == ROW
    assert value_of(record)["source"] == {
        "version": CONNECTOR_VERSION,
        "connector": "mysql",
        "name": "p",
        "ts_ms": 1_600_000_000_000,
        "snapshot": "false",
        "db": "inventory",
        "sequence": None,
        "ts_us": 1_600_000_000_000_000,
        "ts_ns": 1_600_000_000_000_000_000,
        "table": "customers",
        "server_id": 7,
        "gtid": None,
        "file": "binlog.000042",
        "pos": 1234,
        "row": 2,
        "thread": None,
        "query": None,
    }
    assert orjson.loads(record.value_bytes() or b"") == record.value


def test_tombstones_can_be_turned_off() -> None:
    options = DebeziumOptions(topic_prefix="p", tombstones_on_delete=False)
    records = change_event_records(
        "inventory", "customers", CUSTOMERS_SCHEMA, internal_event("d", ROW, None, SRC), options
    )
    assert len(records) == 1
    assert records[0].value is not None and records[0].value["payload"]["op"] == "d"


def test_snapshot_marker_and_its_override() -> None:
    table = DebeziumTable("inventory", "customers", CUSTOMERS_SCHEMA, OPTIONS)
    read = internal_event("r", None, ROW, SRC, snapshot=True)
    assert table.envelope(read)["source"]["snapshot"] == "true"
    assert table.envelope(read, snapshot="last")["source"]["snapshot"] == "last"
    assert table.envelope(internal_event("c", None, ROW, SRC))["source"]["snapshot"] == "false"
    with pytest.raises(ValueError):
        table.envelope({**read, "op": "x"})


def test_envelope_ts_defaults_to_now() -> None:
    table = DebeziumTable("inventory", "customers", CUSTOMERS_SCHEMA, OPTIONS)
    before = dt.datetime.now(dt.UTC).timestamp() * 1000
    payload = table.envelope(internal_event("c", None, ROW, SRC))
    assert before - 1 <= payload["ts_ms"] <= before + 60_000
    assert payload["ts_us"] == payload["ts_ms"] * 1000


def test_table_without_primary_key() -> None:
    schema = {"columns": [["a", "int", "int(11)", True], ["b", "varchar", "text", True]], "pk": []}
    event = {**internal_event("c", None, {"a": 1, "b": "x"}, SRC, ("a", "b"))}
    [record] = change_event_records("db", "t", schema, event, OPTIONS)
    assert record.key is None  # Debezium: a table without a key has null record keys
    assert key_schema("db", "t", schema, OPTIONS) is None
    options = DebeziumOptions(topic_prefix=PREFIX, keyless_table_key="row")
    [record] = change_event_records("db", "t", schema, event, options)
    assert record.key is not None
    assert key_of(record)["payload"] == {"a": 1, "b": "x"}
    assert [f["field"] for f in key_of(record)["schema"]["fields"]] == ["a", "b"]
    assert all(f["optional"] for f in key_of(record)["schema"]["fields"])


def test_key_change_split_by_the_source_gives_delete_tombstone_create() -> None:
    # sources/job.py turns a primary-key update into d (old key) + c (new key), as Debezium does.
    new = {**ROW, "id": 2}
    events = [internal_event("d", ROW, None, SRC), internal_event("c", None, new, SRC)]
    batch = ChangeBatch("inventory", "customers", CUSTOMERS_SCHEMA, events)
    records = batch_records(ChangeBatch.from_bytes(batch.to_bytes()), OPTIONS, ts_ms=NOW_MS)
    assert [(r.key["payload"] if r.key else None) for r in records] == [
        {"id": 1},
        {"id": 1},
        {"id": 2},
    ]
    assert [r.value["payload"]["op"] if r.value else None for r in records] == ["d", None, "c"]


@pytest.mark.parametrize(
    ("prefix", "db", "table", "expected"),
    [
        ("dbserver1", "inventory", "customers", "dbserver1.inventory.customers"),
        ("fulfillment", "inventory", "orders", "fulfillment.inventory.orders"),
        ("p", "my db", "t$1", "p.my_db.t_1"),
    ],
)
def test_topic_name(prefix: str, db: str, table: str, expected: str) -> None:
    assert topic_name(prefix, db, table) == expected


def test_every_payload_conforms_to_its_schema() -> None:
    schema = {"columns": [c.to_json() for c in ALL_TYPES], "pk": ["id"]}
    row = row_normaliser(ALL_TYPES)(ALL_TYPES_ROW)
    event = internal_event("u", row, row, SRC)
    [record] = change_event_records("db", "all_types", schema, event, OPTIONS, ts_ms=NOW_MS)
    assert record.key is not None and record.value is not None
    conforms(key_of(record)["schema"], key_of(record)["payload"])
    conforms(value_of(record)["schema"], value_of(record)["payload"])
    nulls = dict.fromkeys(row) | {"id": 1}
    [record] = change_event_records(
        "db", "all_types", schema, internal_event("c", None, nulls, SRC), OPTIONS
    )
    assert record.value is not None
    conforms(value_of(record)["schema"], value_of(record)["payload"])
    # The value schema is the one value_schema() gives for the table.
    assert value_of(record)["schema"] == value_schema("db", "all_types", schema, OPTIONS)


_JSON_TYPES: dict[str, type] = {
    "int8": int, "int16": int, "int32": int, "int64": int, "float": float, "double": float,
    "boolean": bool, "string": str, "bytes": str, "struct": dict,
}  # fmt: skip
_RANGES = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}


def conforms(schema: Json, value: Any) -> None:
    """Kafka Connect's rules for a value of a schema, as the JSON converter would read it back."""
    if value is None:
        assert schema["optional"] or "default" in schema, schema
        return
    t = schema["type"]
    of_type = isinstance(value, _JSON_TYPES[t])  # (an assert here would narrow value to object)
    assert of_type, (schema, value)
    if t in _RANGES:
        assert not isinstance(value, bool)
        assert -(1 << (_RANGES[t] - 1)) <= value < 1 << (_RANGES[t] - 1), (schema, value)
    if t == "bytes":
        base64.b64decode(value, validate=True)
    if t == "struct":
        assert [f["field"] for f in schema["fields"]] == list(value), schema.get("name")
        for f in schema["fields"]:
            conforms(f, value[f["field"]])


# --------------------------------------------------------------------------- value conversions


def dbz(
    data_type: str,
    column_type: str,
    value: Any,
    *,
    nullable: bool = True,
    options: DebeziumOptions = OPTIONS,
) -> tuple[Any, Json]:
    """(Debezium value, field schema) of a source value, through sluice's own normaliser."""
    col = Column("c", data_type, column_type, nullable)
    normalised = row_normaliser([col])({"c": value})["c"]
    # What travels through Kafka is JSON: convert what a consumer would decode.
    normalised = orjson.loads(orjson.dumps(normalised))
    return convert_value(col, normalised, options), column_schema(col, options)


def epoch_micros(d: dt.datetime) -> int:
    return calendar.timegm(d.timetuple()) * 1_000_000 + d.microsecond


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(hours=12, minutes=34, seconds=56, microseconds=789000), 45_296_789_000),
        (dt.timedelta(seconds=-1, microseconds=-500000), -1_500_000),
        (-dt.timedelta(hours=838, minutes=59, seconds=59), -3_020_399_000_000),
        (dt.timedelta(hours=838, minutes=59, seconds=59), 3_020_399_000_000),
        (dt.timedelta(0), 0),
        (dt.time(23, 59, 59, 999999), 86_399_999_999),
    ],
)
def test_time_is_signed_micro_time(value: Any, expected: int) -> None:
    out, schema = dbz("time", "time(6)", value)
    assert out == expected
    assert schema == {
        "type": "int64", "optional": True, "name": "io.debezium.time.MicroTime", "version": 1,
        "field": "c",
    }  # fmt: skip


def test_datetime_precision_4_to_6_is_micro_timestamp() -> None:
    d = dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    for fsp in (4, 5, 6):
        out, schema = dbz("datetime", f"datetime({fsp})", d)
        assert out == epoch_micros(d) == 1_704_164_645_123_456
        assert schema["type"] == "int64" and schema["name"] == "io.debezium.time.MicroTimestamp"
    out, _ = dbz("datetime", "datetime(6)", dt.datetime(1969, 12, 31, 23, 59, 59, 999999))
    assert out == -1
    out, _ = dbz("datetime", "datetime(6)", dt.datetime(1000, 1, 1))
    assert out == epoch_micros(dt.datetime(1000, 1, 1))


def test_datetime_precision_0_to_3_is_millisecond_timestamp() -> None:
    for column_type in ("datetime", "datetime(0)", "datetime(3)"):
        out, schema = dbz("datetime", column_type, dt.datetime(2018, 6, 20, 6, 37, 3))
        assert out == 1_529_476_623_000  # the value Debezium's documentation gives
        assert schema["type"] == "int64" and schema["name"] == "io.debezium.time.Timestamp"
    out, _ = dbz("datetime", "datetime(3)", dt.datetime(1969, 12, 31, 23, 59, 59, 500000))
    assert out == -500


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        ("timestamp", dt.datetime(2018, 6, 20, 13, 37, 3), "2018-06-20T13:37:03Z"),
        ("timestamp(6)", dt.datetime(2024, 1, 2, 3, 4, 5, 123456), "2024-01-02T03:04:05.123456Z"),
        ("timestamp(6)", dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05.000000Z"),
        ("timestamp(3)", dt.datetime(2024, 1, 2, 3, 4, 5, 500000), "2024-01-02T03:04:05.500Z"),
        ("timestamp(2)", dt.datetime(1970, 1, 1, 0, 0, 1, 10000), "1970-01-01T00:00:01.01Z"),
    ],
)
def test_timestamp_is_zoned_timestamp_in_utc(
    column_type: str, value: dt.datetime, expected: str
) -> None:
    out, schema = dbz("timestamp", column_type, value)
    assert out == expected
    assert schema["type"] == "string" and schema["name"] == "io.debezium.time.ZonedTimestamp"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.date(1970, 1, 1), 0),
        (dt.date(1970, 1, 2), 1),
        (dt.date(1969, 12, 31), -1),
        (dt.date(1000, 1, 1), -354_285),
        (dt.date(9999, 12, 31), 2_932_896),
    ],
)
def test_date_is_days_since_epoch(value: dt.date, expected: int) -> None:
    out, schema = dbz("date", "date", value)
    assert out == expected
    assert schema["type"] == "int32" and schema["name"] == "io.debezium.time.Date"


def test_zero_dates_become_null_or_the_epoch() -> None:
    col = Column("c", "date", "date", True)
    assert convert_value(col, "0000-00-00", OPTIONS) is None
    assert convert_value(Column("c", "date", "date", False), "0000-00-00", OPTIONS) == 0
    ts = Column("c", "timestamp", "timestamp", False)
    assert convert_value(ts, "0000-00-00 00:00:00", OPTIONS) == "1970-01-01T00:00:00Z"


def test_year_is_int32() -> None:
    out, schema = dbz("year", "year(4)", 2024)
    assert out == 2024
    assert schema["type"] == "int32" and schema["name"] == "io.debezium.time.Year"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (decimal.Decimal("12.50"), "12.50"),
        (decimal.Decimal("-0.000001"), "-0.000001"),
        (decimal.Decimal("99999999999999999999.99"), "99999999999999999999.99"),
        (decimal.Decimal("0E-10"), "0.0000000000"),
        (decimal.Decimal("1E+3"), "1000"),
    ],
)
def test_decimal_string_mode(value: decimal.Decimal, expected: str) -> None:
    out, schema = dbz("decimal", "decimal(22,2)", value)
    assert out == expected
    assert schema == {"type": "string", "optional": True, "field": "c"}


def test_decimal_precise_and_double_modes() -> None:
    precise = DebeziumOptions(topic_prefix="p", decimal_handling_mode="precise")
    out, schema = dbz("decimal", "decimal(12,2)", decimal.Decimal("12.50"), options=precise)
    assert base64.b64decode(out) == (1250).to_bytes(2, "big")
    assert schema["name"] == "org.apache.kafka.connect.data.Decimal"
    assert schema["parameters"] == {"scale": "2", "connect.decimal.precision": "12"}
    out, _ = dbz("decimal", "decimal(12,2)", decimal.Decimal("-0.01"), options=precise)
    assert base64.b64decode(out) == b"\xff"  # -1 unscaled: BigInteger.toByteArray()
    out, _ = dbz("decimal", "decimal(12,2)", decimal.Decimal("-1.28"), options=precise)
    assert base64.b64decode(out) == b"\x80"
    double = DebeziumOptions(topic_prefix="p", decimal_handling_mode="double")
    out, schema = dbz("decimal", "decimal(12,2)", decimal.Decimal("12.50"), options=double)
    assert out == 12.5 and schema["type"] == "double"


def test_bit_1_is_boolean() -> None:
    assert dbz("bit", "bit(1)", b"\x01") == (
        True,
        {"type": "boolean", "optional": True, "field": "c"},
    )
    assert dbz("bit", "bit(1)", b"\x00")[0] is False


def test_bit_n_is_little_endian_bits() -> None:
    out, schema = dbz("bit", "bit(10)", b"\x02\x01")  # 0b10_0000_0001 = 513, as MySQL sends it
    assert base64.b64decode(out) == b"\x01\x02"
    assert schema["type"] == "bytes" and schema["name"] == "io.debezium.data.Bits"
    assert schema["parameters"] == {"length": "10"}
    out, _ = dbz("bit", "bit(64)", b"\x00" * 7 + b"\x01")
    assert base64.b64decode(out) == b"\x01" + b"\x00" * 7
    out, _ = dbz("bit", "bit(8)", b"\x00")
    assert base64.b64decode(out) == b"\x00"


def test_set_is_comma_joined_in_definition_order() -> None:
    # sluice sorts SET members alphabetically; Debezium writes them in definition order.
    out, schema = dbz("set", "set('z','a','m')", {"a", "z"})
    assert out == "z,a"
    assert schema["name"] == "io.debezium.data.EnumSet"
    assert schema["parameters"] == {"allowed": "z,a,m"}
    assert dbz("set", "set('z','a','m')", "m,z")[0] == "z,m"
    assert dbz("set", "set('z','a','m')", set())[0] == ""


def test_enum_is_string_with_allowed_values() -> None:
    out, schema = dbz("enum", "enum('small','it''s big')", "it's big")
    assert out == "it's big"
    assert schema["name"] == "io.debezium.data.Enum"
    assert schema["parameters"] == {"allowed": "small,it's big"}
    assert enum_options("enum('a,b','c')") == ["a,b", "c"]


def test_json_is_json_text() -> None:
    out, schema = dbz("json", "json", '{"a": [1, 2.5, null], "b": "é"}')
    assert out == '{"a": [1, 2.5, null], "b": "é"}'
    assert schema == {
        "type": "string", "optional": True, "name": "io.debezium.data.Json", "version": 1,
        "field": "c",
    }  # fmt: skip
    out, _ = dbz("json", "json", {b"k": [1, b"v"]})  # MySQL's binlog decodes into objects
    assert json.loads(out) == {"k": [1, "v"]}


def test_unsigned_bigint_long_and_precise_modes() -> None:
    top = 2**64 - 1
    out, schema = dbz("bigint", "bigint(20) unsigned", top)
    assert out == -1  # Debezium's long mode: the binlog's signed long, 2^64-1 overflows to -1
    assert schema["type"] == "int64"
    assert dbz("bigint", "bigint(20) unsigned", 2**63 - 1)[0] == 2**63 - 1
    assert dbz("bigint", "bigint(20) unsigned", 2**63)[0] == -(2**63)
    precise = DebeziumOptions(topic_prefix="p", bigint_unsigned_handling_mode="precise")
    out, schema = dbz("bigint", "bigint(20) unsigned", top, options=precise)
    assert int.from_bytes(base64.b64decode(out), "big", signed=True) == top
    assert schema["parameters"] == {"scale": "0", "connect.decimal.precision": "20"}
    # decimal.handling.mode does not apply: precise unsigned BIGINT is always a Connect Decimal.
    assert schema["type"] == "bytes"


@pytest.mark.parametrize(
    ("column_type", "value", "type_"),
    [
        ("tinyint(4)", -128, "int8"),
        ("tinyint(3) unsigned", 255, "int16"),
        ("smallint(6)", -32768, "int16"),
        ("smallint(5) unsigned", 65535, "int32"),
        ("mediumint(9)", -8388608, "int32"),
        ("mediumint(8) unsigned", 16777215, "int32"),
        ("int(11)", -(2**31), "int32"),
        ("int(10) unsigned", 2**32 - 1, "int64"),
        ("bigint(20)", -(2**63), "int64"),
    ],
)
def test_integers(column_type: str, value: int, type_: str) -> None:
    data_type = column_type.split("(")[0]
    out, schema = dbz(data_type, column_type, value)
    assert out == value
    assert schema == {"type": type_, "optional": True, "field": "c"}


def test_floating_point_schema_names_are_the_json_converters() -> None:
    out, schema = dbz("float", "float", 1.100000023841858)
    assert out == 1.1 and schema["type"] == "float"  # FLOAT32
    assert dbz("float", "float(7,3)", 1.5)[1]["type"] == "double"  # FLOAT(M,D): FLOAT64
    out, schema = dbz("double", "double", 0.1)
    assert out == 0.1 and schema["type"] == "double"  # FLOAT64


def test_binary_modes() -> None:
    out, schema = dbz("varbinary", "varbinary(16)", b"\x00\xff\xfe")
    assert out == "AP/+" and schema["type"] == "bytes"
    assert dbz("blob", "blob", b"")[0] == ""
    for mode, expected in (("base64", "AP/+"), ("base64-url-safe", "AP_-"), ("hex", "00fffe")):
        options = DebeziumOptions(topic_prefix="p", binary_handling_mode=mode)  # type: ignore[arg-type]
        out, schema = dbz("varbinary", "varbinary(16)", b"\x00\xff\xfe", options=options)
        assert (out, schema["type"]) == (expected, "string")


def test_strings_and_not_null_columns() -> None:
    assert dbz("varchar", "varchar(10)", "héllo") == (
        "héllo",
        {"type": "string", "optional": True, "field": "c"},
    )
    assert dbz("text", "text", "x", nullable=False)[1]["optional"] is False
    assert dbz("varchar", "varchar(10)", None) == (
        None,
        {"type": "string", "optional": True, "field": "c"},
    )


def _mysql_geometry(srid: int, wkb: bytes) -> bytes:
    return struct.pack("<I", srid) + wkb


def test_geometry_and_point() -> None:
    wkb = struct.pack("<BIdd", 1, 1, 1.5, -2.0)
    out, schema = dbz("geometry", "geometry", _mysql_geometry(4326, wkb))
    assert out == {"wkb": base64.b64encode(wkb).decode(), "srid": 4326}
    assert schema["name"] == "io.debezium.data.geometry.Geometry"
    assert [f["field"] for f in schema["fields"]] == ["wkb", "srid"]
    point = Column("c", "point", "point", True)
    encoded = base64.b64encode(_mysql_geometry(0, wkb)).decode()
    assert convert_value(point, encoded, OPTIONS) == {
        "x": 1.5, "y": -2.0, "wkb": base64.b64encode(wkb).decode(), "srid": 0,
    }  # fmt: skip


# A table with one column of each type family, for the schema-conformance test.
ALL_TYPES = [
    Column("id", "int", "int(11)", False),
    Column("ti", "tinyint", "tinyint(1)", True),
    Column("ubig", "bigint", "bigint(20) unsigned", True),
    Column("f", "float", "float", True),
    Column("d", "double", "double", True),
    Column("dec", "decimal", "decimal(10,2)", True),
    Column("ch", "char", "char(3)", True),
    Column("txt", "mediumtext", "mediumtext", True),
    Column("bin", "varbinary", "varbinary(8)", True),
    Column("b1", "bit", "bit(1)", True),
    Column("b9", "bit", "bit(9)", True),
    Column("dt", "date", "date", True),
    Column("dtm", "datetime", "datetime(6)", True),
    Column("dtm0", "datetime", "datetime", True),
    Column("ts", "timestamp", "timestamp(3)", True),
    Column("tm", "time", "time", True),
    Column("yr", "year", "year(4)", True),
    Column("en", "enum", "enum('a','b')", True),
    Column("st", "set", "set('a','b')", True),
    Column("js", "json", "json", True),
    Column("geo", "geometry", "geometry", True),
]
ALL_TYPES_ROW = {
    "id": 1,
    "ti": 1,
    "ubig": 2**64 - 1,
    "f": 1.5,
    "d": 2.25,
    "dec": decimal.Decimal("3.10"),
    "ch": "abc",
    "txt": "t",
    "bin": b"\x01",
    "b1": b"\x01",
    "b9": b"\x01\x00",
    "dt": dt.date(1969, 7, 20),
    "dtm": dt.datetime(1969, 7, 20, 20, 17, 40, 5),
    "dtm0": dt.datetime(2000, 1, 1),
    "ts": dt.datetime(2038, 1, 19, 3, 14, 7, 999000),
    "tm": dt.timedelta(hours=-1),
    "yr": 1901,
    "en": "b",
    "st": {"b", "a"},
    "js": "[]",
    "geo": _mysql_geometry(0, struct.pack("<BIdd", 1, 1, 0.0, 0.0)),
}


def test_truncate_becomes_debezium_truncate_and_schema_changes_have_no_record() -> None:
    table = DebeziumTable("inventory", "customers", CUSTOMERS_SCHEMA, DebeziumOptions("dbserver1"))
    src = {
        "server_id": 1,
        "file": "binlog.000001",
        "pos": 10,
        "row": 0,
        "ts_ms": 1,
        "snapshot": False,
    }
    pos = BinlogPosition(1, 10).key()
    ctl = {"key": None, "before": None, "after": None, "pos": pos, "source": src, "ddl": "TRUNCATE"}
    (rec,) = table.records({**ctl, "op": "t"}, ts_ms=5)
    payload = rec.value["payload"]  # type: ignore[index]
    assert rec.key is None
    assert payload["op"] == "t" and payload["before"] is None and payload["after"] is None
    assert table.records({**ctl, "op": "s"}, ts_ms=5) == []
