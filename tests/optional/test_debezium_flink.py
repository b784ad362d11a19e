"""app/debezium.py's events read by a real Debezium consumer: Flink's ``debezium-json`` format.

Needs PyFlink (``pip install -e '.[flink]'``, ~850 MB with its dependencies) and a Java 11/17
runtime, so it lives in tests/optional/, outside the default test run (README, "Tests").
Each change event file is read through a Table API filesystem source, once in the
schema-less form (``debezium-json.schema-include`` false, Flink's default) and once with
``{"schema", "payload"}`` (schema-include true), and the changelog Flink derives is checked:
``r``/``c`` → +I, ``u`` → -U then +U, ``d`` → -D. Tombstones are null Kafka values, which a file
cannot hold and Flink skips anyway. (The format's metadata columns, such as
``value.source.table``, are only offered through the Kafka connector, which PyFlink does not ship;
the filesystem connector exposes only ``file.*`` metadata.)
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyflink.table import EnvironmentSettings, TableEnvironment

from app.debezium import DebeziumOptions, batch_records
from app.records import ChangeBatch
from sources.schema import Column
from sources.values import row_normaliser

Json = dict[str, Any]

CUSTOMERS = {
    "columns": [
        ["id", "int", "int(11)", False],
        ["first_name", "varchar", "varchar(255)", False],
        ["last_name", "varchar", "varchar(255)", False],
        ["email", "varchar", "varchar(255)", False],
    ],
    "pk": ["id"],
}
CUSTOMERS_DDL = "id INT, first_name STRING, last_name STRING, email STRING"

TYPED_COLUMNS = [
    Column("id", "int", "int(11)", False),
    Column("price", "decimal", "decimal(10,2)", True),
    Column("born", "date", "date", True),
    Column("seen", "datetime", "datetime(6)", True),
    Column("at", "timestamp", "timestamp(3)", True),
    Column("dur", "time", "time(6)", True),
    Column("flag", "bit", "bit(1)", True),
    Column("data", "blob", "blob", True),
    Column("tags", "set", "set('z','a')", True),
    Column("doc", "json", "json", True),
    Column("ubig", "bigint", "bigint(20) unsigned", True),
]
# How a Flink user declares those Debezium fields.
TYPED_DDL = (
    "id INT, price STRING, born INT, seen BIGINT, `at` STRING, dur BIGINT, flag BOOLEAN,"
    " data BYTES, tags STRING, doc STRING, ubig BIGINT"
)


def source(pos: int, ts_ms: int, snapshot: bool = False) -> Json:
    return {
        "server_id": 1,
        "file": "binlog.000003",
        "pos": pos,
        "row": 0,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
    }


def event(op: str, before: Json | None, after: Json | None, src: Json) -> Json:
    image = after if after is not None else before
    assert image is not None
    return {
        "op": op,
        "key": {"id": image["id"]},
        "before": before,
        "after": after,
        "pos": "",
        "source": src,
    }


def customers_batch() -> ChangeBatch:
    sally = {"id": 1001, "first_name": "Sally", "last_name": "Thomas", "email": "s@acme.com"}
    anne = {"id": 1004, "first_name": "Anne", "last_name": "Kretchmar", "email": "a@x.org"}
    anne_marie = {**anne, "first_name": "Anne Marie"}
    events = [
        event("r", None, sally, source(154, 1_000, snapshot=True)),
        event("c", None, anne, source(300, 2_000)),
        event("u", anne, anne_marie, source(484, 3_000)),
        event("d", anne_marie, None, source(805, 4_000)),
    ]
    return ChangeBatch("inventory", "customers", CUSTOMERS, events)


def typed_batch() -> ChangeBatch:
    normalise = row_normaliser(TYPED_COLUMNS)
    row = normalise(
        {
            "id": 1,
            "price": decimal.Decimal("-12.50"),
            "born": dt.date(1969, 12, 31),
            "seen": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
            "at": dt.datetime(2024, 1, 2, 3, 4, 5, 500000),
            "dur": -dt.timedelta(hours=1, microseconds=1),
            "flag": b"\x01",
            "data": b"\x00\xff",
            "tags": {"a", "z"},
            "doc": '{"k": [1, null]}',
            "ubig": 2**64 - 1,
        }
    )
    changed = {**row, "price": "0.01", "flag": 0}
    events = [
        event("c", None, row, source(100, 1_000)),
        event("u", row, changed, source(200, 2_000)),
    ]
    schema = {"columns": [c.to_json() for c in TYPED_COLUMNS], "pk": ["id"]}
    return ChangeBatch("shop", "typed", schema, events)


@pytest.fixture(scope="module")
def tenv() -> Iterator[TableEnvironment]:
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", "1")
    yield env


def write_values(batch: ChangeBatch, options: DebeziumOptions, directory: Path) -> Path:
    directory.mkdir(parents=True)
    lines = [r.value_bytes() for r in batch_records(batch, options, ts_ms=9_000)]
    (directory / "events.json").write_bytes(b"\n".join(v for v in lines if v is not None) + b"\n")
    return directory


def changelog(
    tenv: TableEnvironment, name: str, ddl: str, path: Path, schema_include: bool
) -> list[tuple[str, tuple[Any, ...]]]:
    tenv.execute_sql(
        f"CREATE TEMPORARY TABLE {name} ({ddl}) WITH ("
        f" 'connector' = 'filesystem', 'path' = '{path}', 'format' = 'debezium-json',"
        f" 'debezium-json.schema-include' = '{str(schema_include).lower()}',"
        " 'debezium-json.ignore-parse-errors' = 'false')"
    )
    try:
        with tenv.execute_sql(f"SELECT * FROM {name}").collect() as results:
            return [(str(r.get_row_kind()), tuple(r)) for r in results]
    finally:
        tenv.execute_sql(f"DROP TEMPORARY TABLE {name}")


@pytest.mark.parametrize("schema_include", [False, True])
def test_flink_reads_the_customers_changelog(
    tenv: TableEnvironment, tmp_path: Path, schema_include: bool
) -> None:
    options = DebeziumOptions(topic_prefix="dbserver1", schemas_enable=schema_include)
    path = write_values(customers_batch(), options, tmp_path / "customers")
    rows = changelog(tenv, "customers", CUSTOMERS_DDL, path, schema_include)
    assert rows == [
        ("+I", (1001, "Sally", "Thomas", "s@acme.com")),
        ("+I", (1004, "Anne", "Kretchmar", "a@x.org")),
        ("-U", (1004, "Anne", "Kretchmar", "a@x.org")),
        ("+U", (1004, "Anne Marie", "Kretchmar", "a@x.org")),
        ("-D", (1004, "Anne Marie", "Kretchmar", "a@x.org")),
    ]


@pytest.mark.parametrize("schema_include", [False, True])
def test_flink_reads_the_typed_values(
    tenv: TableEnvironment, tmp_path: Path, schema_include: bool
) -> None:
    options = DebeziumOptions(topic_prefix="dbserver1", schemas_enable=schema_include)
    path = write_values(typed_batch(), options, tmp_path / "typed")
    rows = changelog(tenv, "typed", TYPED_DDL, path, schema_include)
    first = (
        1,
        "-12.50",
        -1,
        1_704_164_645_123_456,
        "2024-01-02T03:04:05.500Z",
        -3_600_000_001,
        True,
        base64.b64decode("AP8="),
        "z,a",
        '{"k": [1, null]}',
        -1,
    )
    second = (1, "0.01", *first[2:6], False, *first[7:])
    assert [kind for kind, _ in rows] == ["+I", "-U", "+U"]
    assert rows[0][1] == first
    assert rows[1][1] == first
    assert rows[2][1] == second
