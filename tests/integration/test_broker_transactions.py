"""Kafka transactions against the embedded Tansu broker (no mocks).

Tansu's read_committed does not hide aborted records, so these tests never assert
on record visibility; they assert on the consumer group's committed offsets, which
is what exactly-once processing relies on (consume -> produce -> commit offsets in
the same transaction).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from app.broker import EmbeddedBroker
from app.kafka_compat import disable_tansu_compat, enable_tansu_compat, is_tansu_compat_enabled

# Async fixtures default to the session loop (pyproject), so run the tests there too.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(30),
    pytest.mark.asyncio(loop_scope="session"),
]

TOPIC_ALREADY_EXISTS = 36


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
async def admin(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def compat() -> Iterator[None]:
    was_enabled = is_tansu_compat_enabled()
    enable_tansu_compat()
    yield
    if not was_enabled:
        disable_tansu_compat()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_topic(admin: AIOKafkaAdminClient, name: str, partitions: int = 2) -> None:
    response = await admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)]
    )
    assert [(t[0], t[1]) for t in response.topic_errors] == [(name, 0)]


async def committed(broker: EmbeddedBroker, group: str, tp: TopicPartition) -> int | None:
    """The group's committed offset for ``tp``, read by a fresh consumer of the group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(tp)
        return offset
    finally:
        await consumer.stop()


async def admin_committed(admin: AIOKafkaAdminClient, group: str, tp: TopicPartition) -> int | None:
    # partitions must be given: with partitions=None aiokafka sends an OffsetFetch
    # for "all topics" whose Tansu response it cannot decode (connection closed).
    offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    meta = offsets.get(tp)
    return None if meta is None or meta.offset < 0 else int(meta.offset)


async def produce(broker: EmbeddedBroker, topic: str, partition: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, f"v{i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def test_admin_create_topics_is_explicit(
    broker: EmbeddedBroker, admin: AIOKafkaAdminClient
) -> None:
    topic = unique("created")
    await create_topic(admin, topic, partitions=2)
    (described,) = await admin.describe_topics([topic])
    assert described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1]

    again = await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    assert again.topic_errors[0][1] == TOPIC_ALREADY_EXISTS

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        assert topic in await consumer.topics()  # metadata round trip
        assert consumer.partitions_for_topic(topic) == {0, 1}
    finally:
        await consumer.stop()


@pytest.mark.usefixtures("compat")
async def test_transactional_offsets_abort_then_commit(
    broker: EmbeddedBroker, admin: AIOKafkaAdminClient
) -> None:
    topic, out_topic, group = unique("in"), unique("out"), unique("G")
    await create_topic(admin, topic)
    await create_topic(admin, out_topic)
    tp = TopicPartition(topic, 0)
    await produce(broker, topic, partition=0, count=10)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Tansu holds the first JoinGroup for about session_timeout / 2 (5 s at the
        # 10 s default); a shorter session keeps this test quick.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx"))
    try:
        offsets: list[int] = []
        deadline = time.monotonic() + 15
        while len(offsets) < 10 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            offsets.extend(m.offset for m in batch.get(tp, []))
        assert offsets == list(range(10))
        assert (await consumer.end_offsets([tp]))[tp] == 10
        assert await committed(broker, group, tp) is None

        # Baseline: a plain consumer commit.
        await consumer.commit({tp: 2})
        assert await committed(broker, group, tp) == 2

        await producer.start()

        # Aborted transaction: its offset commit must not take effect.
        await producer.begin_transaction()
        await producer.send_and_wait(out_topic, b"aborted", partition=0)
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(5, "")}, group)
        await producer.abort_transaction()
        assert await committed(broker, group, tp) == 2
        assert await admin_committed(admin, group, tp) == 2

        # Committed transaction: the offset moves to exactly m.
        await producer.begin_transaction()
        await producer.send_and_wait(out_topic, b"committed", partition=0)
        await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(10, "")}, group)
        await producer.commit_transaction()
        assert await committed(broker, group, tp) == 10
        assert await admin_committed(admin, group, tp) == 10
        assert await consumer.committed(tp) == 10
    finally:
        await producer.stop()
        await consumer.stop()


@pytest.mark.usefixtures("compat")
async def test_new_producer_with_same_transactional_id_fences_old(
    broker: EmbeddedBroker, admin: AIOKafkaAdminClient
) -> None:
    """A zombie (older epoch) can no longer add partitions/offsets to a transaction.

    Real Kafka answers PRODUCER_FENCED / INVALID_PRODUCER_EPOCH (aiokafka raises
    ProducerFenced). Tansu 0.6.0 detects the fencing (its log says ProducerFenced) but
    answers UNKNOWN_SERVER_ERROR, which aiokafka raises as a generic KafkaError; both
    are KafkaError, which is what we assert.
    """
    topic, group, txn_id = unique("fence"), unique("G"), unique("tx")
    await create_topic(admin, topic)
    tp = TopicPartition(topic, 0)
    await produce(broker, topic, partition=0, count=5)

    old = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id)
    new = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id)
    await old.start()
    try:
        async with old.transaction():
            await old.send_offsets_to_transaction({tp: OffsetAndMetadata(1, "")}, group)
        assert await committed(broker, group, tp) == 1

        await new.start()  # InitProducerId bumps the epoch: `old` is now a zombie

        with pytest.raises(KafkaError):
            await old.begin_transaction()
            await old.send_offsets_to_transaction({tp: OffsetAndMetadata(3, "")}, group)
            await asyncio.wait_for(old.commit_transaction(), 10)
        assert await committed(broker, group, tp) == 1

        async with new.transaction():
            await new.send_and_wait(topic, b"from-new", partition=1)
            await new.send_offsets_to_transaction({tp: OffsetAndMetadata(4, "")}, group)
        assert await committed(broker, group, tp) == 4
    finally:
        await old.stop()
        await new.stop()


@pytest.mark.usefixtures("compat")
async def test_zombie_cannot_commit_open_transaction(
    broker: EmbeddedBroker, admin: AIOKafkaAdminClient
) -> None:
    """A producer fenced *during* a transaction never gets to commit it.

    Real Kafka raises ProducerFenced from commit. Tansu 0.6.0 closes the connection on
    the fenced EndTxn, which aiokafka retries forever, so the commit just never
    completes; either way the group's offset must not move.
    """
    topic, group, txn_id = unique("zombie"), unique("G"), unique("tx")
    await create_topic(admin, topic)
    tp = TopicPartition(topic, 0)

    old = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id)
    new = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id)
    await old.start()
    try:
        await old.begin_transaction()
        await old.send_and_wait(topic, b"zombie", partition=1)
        await old.send_offsets_to_transaction({tp: OffsetAndMetadata(7, "")}, group)

        await new.start()

        with pytest.raises((KafkaError, TimeoutError)):
            await asyncio.wait_for(old.commit_transaction(), 3)
        assert await committed(broker, group, tp) is None

        async with new.transaction():
            await new.send_offsets_to_transaction({tp: OffsetAndMetadata(2, "")}, group)
        assert await committed(broker, group, tp) == 2
    finally:
        await old.stop()
        await new.stop()


async def test_transactional_producer_needs_compat_layer(broker: EmbeddedBroker) -> None:
    """Without app.kafka_compat, aiokafka's InitProducerId v0 is rejected by Tansu."""
    was_enabled = is_tansu_compat_enabled()
    disable_tansu_compat()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("tx"))
    try:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.start(), 15)
    finally:
        await producer.stop()
        if was_enabled:
            enable_tansu_compat()


@pytest.mark.usefixtures("compat")
async def test_highwater_with_an_open_transaction(
    broker: EmbeddedBroker, admin: AIOKafkaAdminClient
) -> None:
    """Faust's changelog highwaters (app/faust_compat.py) stay a real offset while a transaction
    is open on the partition; the embedded broker's read_committed answer there is wrong."""
    from app.faust_compat import _highwaters

    topic = unique("changelog")
    await create_topic(admin, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    await produce(broker, topic, partition=0, count=3)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("t"))
    reader = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed")
    await producer.start()
    await reader.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"open", partition=0)

        class Thread:  # what _highwaters needs of faust's consumer thread
            def _ensure_consumer(self) -> AIOKafkaConsumer:
                return reader

        raw = (await reader.end_offsets([tp]))[tp]
        assert raw != 3  # the last stable offset; the embedded broker says -1 or 0
        # Recovery may wait for the open transaction, but never stops short of a real record.
        assert (await _highwaters(Thread(), [tp]))[tp] == 4  # type: ignore[arg-type]
        await producer.commit_transaction()
        # The commit marker takes offset 4, but no consumer receives it: recovery waits for the
        # record before the highwater, so the highwater is one past the last record.
        assert (await reader.end_offsets([tp]))[tp] == 5
        assert (await _highwaters(Thread(), [tp]))[tp] == 4  # type: ignore[arg-type]
    finally:
        await reader.stop()
        await producer.stop()
