"""A Debezium-format sink: every change as one Kafka message in Debezium's envelope.

Topics ``<topic_prefix>.<database>.<table>`` are created with the CDC topics' partition count and
keyed by the Debezium key, so per-key order holds. Sends are awaited until acknowledged before
the batch counts as written; a crash before the Faust commit sends them again (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from app.debezium import DebeziumOptions, batch_records
from app.pipeline import DebeziumSink
from app.records import ChangeBatch
from app.topics import TopicSpec, ensure_topics
from sinks.sql import IncomingBatch


class DebeziumTarget:
    def __init__(self, config: DebeziumSink, bootstrap: list[str], partitions: int) -> None:
        self.config = config
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._options = DebeziumOptions(
            config.topic_prefix,
            schemas_enable=config.schemas_enable,
            tombstones_on_delete=config.tombstones_on_delete,
        )
        self._producer: AIOKafkaProducer | None = None
        self._topics: set[str] = set()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await self._producer.start()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def apply(self, batches: Sequence[IncomingBatch]) -> int:
        """Send the batches' events; returns how many records were acknowledged."""
        assert self._producer is not None, "start() first"
        records = []
        for b in batches:
            if not b.events or not self.config.tables.matches(b.database, b.table):
                continue
            batch = ChangeBatch(b.database, b.table, b.schema.to_json(), b.events)
            records += batch_records(batch, self._options)
        new = {r.topic for r in records} - self._topics
        if new:
            await ensure_topics(self._bootstrap, [TopicSpec(t, self._partitions) for t in new])
            self._topics |= new
        futures = [
            await self._producer.send(r.topic, r.value_bytes(), key=r.key_bytes()) for r in records
        ]
        if futures:
            await asyncio.gather(*futures)
        return len(records)
