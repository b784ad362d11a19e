"""Read topics from the real broker, for assertions on what was written."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_json(
    bootstrap: str, topic: str, key: bytes | None = None, partition: int = 0
) -> list[Any]:
    """Every record's JSON value in ``topic``/``partition`` (only ``key``'s when given)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Any] = []
        while await consumer.position(tp) < end:
            for msgs in (await consumer.getmany(tp, timeout_ms=1000)).values():
                out += [orjson.loads(m.value) for m in msgs if key is None or m.key == key]
        return out
    finally:
        await consumer.stop()


async def change_events(bootstrap: str, topic: str, partitions: int) -> list[dict[str, Any]]:
    """Every change event in a topic of change batches, with its partition and offset."""
    out: list[dict[str, Any]] = []
    for p in range(partitions):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for msgs in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    for m in msgs:
                        batch = orjson.loads(m.value)
                        for ev in batch.get("events", []):
                            out.append({**ev, "_partition": p, "_offset": m.offset,
                                        "_table": batch.get("table")})  # fmt: skip
        finally:
            await consumer.stop()
    return out


async def partitions_and_records(bootstrap: str, topic: str) -> tuple[int, int]:
    """How many partitions ``topic`` has and how many offsets they hold in all."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return len(parts), sum(ends.values())
    finally:
        await consumer.stop()
