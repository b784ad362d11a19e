"""The Debezium sink against the real broker: one message per change in Debezium's envelope,
keyed by the row key, a tombstone after a delete, in per-key order."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from app.broker import EmbeddedBroker
from app.kafka_compat import enable_tansu_compat
from app.pipeline import DebeziumSink, parse_pipeline
from sinks.debezium import DebeziumTarget
from sinks.sql import IncomingBatch
from sources.position import BinlogPosition
from sources.schema import Column, TableSchema

pytestmark = pytest.mark.integration

SCHEMA = TableSchema(
    "inventory",
    "customers",
    (
        Column("id", "int", "int(11)", False),
        Column("first_name", "varchar", "varchar(255)", False),
        Column("email", "varchar", "varchar(255)", False),
    ),
    ("id",),
)


def _event(op: str, pos: int, before: Any, after: Any) -> dict[str, Any]:
    row = after or before
    source = {"server_id": 1, "file": "binlog.000003", "pos": pos, "row": 0, "ts_ms": 1000,
              "snapshot": False}  # fmt: skip
    return {"op": op, "key": {"id": row["id"]}, "before": before, "after": after,
            "pos": BinlogPosition(3, pos).key(), "source": source}  # fmt: skip


async def _read_all(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < n:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    out += msgs
    finally:
        await consumer.stop()
    return out


@pytest.mark.asyncio(loop_scope="session")
async def test_changes_become_debezium_messages(broker: EmbeddedBroker, unique: str) -> None:
    enable_tansu_compat()  # the worker does this when SLUICE_EMBEDDED_BROKER is set
    config = DebeziumSink(name="dbz", kind="debezium", source="s", topic_prefix=unique)
    target = DebeziumTarget(config, [broker.bootstrap], partitions=2)
    await target.start()
    ann = {"id": 1001, "first_name": "Ann", "email": "ann@example.com"}
    anne = {**ann, "first_name": "Anne"}
    events = [_event("c", 10, None, ann), _event("u", 20, ann, anne), _event("d", 30, anne, None)]
    batch = IncomingBatch("cdc.inventory.customers", 0, 0, "inventory", "customers", SCHEMA, events)
    try:
        assert await target.apply([batch]) == 4  # three changes and the delete's tombstone
    finally:
        await target.close()
    msgs = await _read_all(broker.bootstrap, f"{unique}.inventory.customers", 4)
    assert {orjson.loads(m.key)["id"] for m in msgs} == {1001}
    assert len({m.partition for m in msgs}) == 1  # one key, one partition, in order
    values = [orjson.loads(m.value) if m.value is not None else None for m in msgs]
    assert [v["op"] if v else None for v in values] == ["c", "u", "d", None]
    assert values[0]["after"] == ann and values[0]["before"] is None
    assert values[1]["before"]["first_name"] == "Ann" and values[1]["after"]["first_name"] == "Anne"
    assert values[2]["after"] is None
    assert values[0]["source"]["db"] == "inventory" and values[0]["source"]["pos"] == 10


def test_pipeline_accepts_a_debezium_sink_next_to_sql_ones() -> None:
    p = parse_pipeline(
        """
sources: [{name: s, url: "mysql://root@h:3306", server_id: 9}]
sinks:
  - {name: pg, source: s, url: "postgresql+psycopg://u@h/db"}
  - {name: dbz, kind: debezium, source: s, topic_prefix: dbz, schemas_enable: true}
"""
    )
    assert [type(s).__name__ for s in p.sinks] == ["SqlSink", "DebeziumSink"]
