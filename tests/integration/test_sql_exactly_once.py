"""``consistency: exactly_once`` (sinks/resume.py) against the embedded broker and real
PostgreSQL: messages at or below the stored offset are skipped, and a stored offset that no longer
names the same record (a recreated topic) is dropped, with a warning, for position versioning."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.broker import EmbeddedBroker
from app.pipeline import SqlSink
from sinks import resume
from sinks.sql import IncomingBatch, SqlTarget
from tests.integration.test_sql_target import ORDERS, ins, pos, upd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.asyncio(loop_scope="session"),
]


@pytest.fixture
async def topic(broker: EmbeddedBroker) -> AsyncIterator[str]:
    """A fresh one-partition topic holding four records, v0..v3 at offsets 0..3."""
    name = f"sluice.shop.orders-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(name, VALUES[i], partition=0)
    finally:
        await producer.stop()
    yield name


VALUES = [f"v{i}".encode() for i in range(4)]


class Sink:
    """SqlTargets of one sink in PostgreSQL, started again as a restarted worker would."""

    def __init__(self, url: str, unique: str, **settings: Any) -> None:
        self.config = SqlSink(
            name=f"sink_{unique}",
            url=url,
            source="s",
            table_name="{table}_" + unique,
            consistency="exactly_once",
            **settings,
        )
        self.started: list[SqlTarget] = []

    def start(self) -> SqlTarget:
        target = SqlTarget(self.config)
        self.started.append(target)
        return target

    def close(self) -> None:
        for t in self.started:
            t.close()


@pytest.fixture
def sink(pg_url: str, unique: str) -> Iterator[Sink]:
    s = Sink(pg_url, unique)
    yield s
    s.close()


def message(topic: str, offset: int, events: list[dict[str, Any]], value: bytes) -> IncomingBatch:
    return IncomingBatch(
        topic, 0, offset, "shop", "orders", ORDERS, events, resume.anchor_of(value)
    )


def names(target: SqlTarget) -> dict[int, str]:
    name = target.target_name("shop", "orders")
    with target.engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(sa.text(f'SELECT id, name FROM "{name}"'))}


async def test_messages_at_or_below_the_stored_offset_are_skipped_after_a_checked_restart(
    broker: EmbeddedBroker, sink: Sink, topic: str
) -> None:
    first = sink.start()
    first.apply([message(topic, 0, [ins(1, pos(100))], VALUES[0])])
    first.apply([message(topic, 1, [ins(2, pos(101))], VALUES[1])])
    assert first.stored_anchor(topic, 0) == (1, resume.anchor_of(VALUES[1]))

    restarted = sink.start()
    await resume.check(restarted, broker.bootstrap, topic, 0)
    assert restarted.resume_from == {(topic, 0): 1}
    # Redelivered offsets 0 and 1, here with changes position versioning would apply: skipped.
    again = [
        message(topic, 0, [upd(1, pos(500), "must not be applied")], VALUES[0]),
        message(topic, 1, [upd(2, pos(501), "must not be applied")], VALUES[1]),
    ]
    assert restarted.apply(again) == 0
    assert names(restarted) == {1: "n", 2: "n"}
    assert restarted.apply([*again, message(topic, 2, [upd(1, pos(200), "two")], VALUES[2])]) == 1
    assert names(restarted) == {1: "two", 2: "n"}
    assert restarted.stored_anchor(topic, 0) == (2, resume.anchor_of(VALUES[2]))


@pytest.mark.parametrize("recreated", ["other record at the offset", "offset past the end"])
async def test_a_stored_offset_naming_another_record_is_dropped_with_a_warning(
    broker: EmbeddedBroker,
    sink: Sink,
    topic: str,
    recreated: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = sink.start()
    # Progress stored from an earlier incarnation of the topic: its record at the offset was
    # another one, or the topic was longer than the new one is.
    offset = 1 if recreated == "other record at the offset" else 40
    first.apply([message(topic, offset, [ins(1, pos(300), "newer")], b"earlier incarnation")])

    restarted = sink.start()
    with caplog.at_level(logging.WARNING, logger="sinks.resume"):
        await resume.check(restarted, broker.bootstrap, topic, 0)
    assert restarted.resume_from == {}
    assert restarted.stored_anchor(topic, 0) is None
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert f"sink {sink.config.name}" in warning and f"{topic}[0]" in warning
    # Every message is applied again; position versioning keeps the newer row.
    applied = restarted.apply(
        [
            message(topic, 0, [ins(1, pos(100), "older")], VALUES[0]),
            message(topic, 1, [ins(2, pos(101), "two")], VALUES[1]),
        ]
    )
    assert applied == 2
    assert names(restarted) == {1: "newer", 2: "two"}
    assert restarted.stored_anchor(topic, 0) == (1, resume.anchor_of(VALUES[1]))


async def test_append_mode_redelivery_of_applied_offsets_inserts_nothing(
    broker: EmbeddedBroker, pg_url: str, unique: str, topic: str
) -> None:
    sink = Sink(pg_url, unique, mode="append")
    try:
        first = sink.start()
        first.apply([message(topic, 0, [ins(1, pos(100))], VALUES[0])])
        first.apply([message(topic, 1, [upd(1, pos(101), "b")], VALUES[1])])

        restarted = sink.start()
        await resume.check(restarted, broker.bootstrap, topic, 0)
        # Redelivered: skipped before any insert, even one that would not hit an existing row.
        redelivered = [
            message(topic, 0, [ins(1, pos(100))], VALUES[0]),
            message(topic, 1, [upd(1, pos(999), "never")], VALUES[1]),
        ]
        assert restarted.apply(redelivered) == 0
        assert restarted.apply([message(topic, 2, [upd(1, pos(102), "c")], VALUES[2])]) == 1
        name = restarted.target_name("shop", "orders")
        with restarted.engine.connect() as conn:
            log = conn.execute(sa.text(f'SELECT _sluice_op, name FROM "{name}" ORDER BY 1, 2'))
            assert [tuple(r) for r in log] == [("c", "n"), ("u", "b"), ("u", "c")]
    finally:
        sink.close()
