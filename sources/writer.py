"""Writes change events to CDC topics and the job's progress, one Kafka transaction at a time.

Events are grouped per (topic, partition) into batch messages (see app/records.py). A flush
sends every batch, waits until the broker acknowledged all of them, then sends the progress
record and commits: progress is never visible without the changes it covers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from app.records import FORMAT_VERSION
from sources.progress import JobProgress, job_key

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 512 * 1024


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java/aiokafka default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class _Batch:
    __slots__ = ("events", "first_key", "head", "size")

    def __init__(self, head: bytes, first_key: bytes) -> None:
        self.head = head
        self.first_key = first_key
        self.events: list[bytes] = []
        self.size = len(head)

    def value(self) -> bytes:
        return self.head + b",".join(self.events) + b"]}"


class ChangeWriter:
    def __init__(self, producer: AIOKafkaProducer, job: str, positions_topic: str) -> None:
        self._producer = producer
        self._positions_topic = positions_topic
        self._job = job
        self._open: dict[tuple[str, int], _Batch] = {}
        self._done: list[tuple[str, int, _Batch]] = []
        self._partitions: dict[str, int] = {}
        self.pending_events = 0

    async def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            parts = await self._producer.partitions_for(topic)
            n = self._partitions[topic] = len(parts)
        return n

    def add(
        self,
        topic: str,
        partitions: int,
        key: bytes,
        event: dict[str, Any],
        head: bytes,
    ) -> None:
        """Queue one event; ``head`` is the encoded batch header of its table and schema."""
        p = partition_for(key, partitions)
        data = orjson.dumps(event)
        batch = self._open.get((topic, p))
        if batch is not None and (
            batch.head != head or batch.size + len(data) + 2 > MAX_MESSAGE_BYTES
        ):
            self._done.append((topic, p, batch))
            batch = None
        if batch is None:
            batch = self._open[(topic, p)] = _Batch(head, key)
        batch.events.append(data)
        batch.size += len(data) + 1
        self.pending_events += 1

    @staticmethod
    def batch_head(database: str, table: str, schema: dict[str, Any]) -> bytes:
        head = orjson.dumps({"v": FORMAT_VERSION, "db": database, "table": table, "schema": schema})
        return head[:-1] + b',"events":['

    async def commit(self, progress: JobProgress, extra: tuple[str, bytes] | None = None) -> int:
        """Send everything queued plus ``progress`` in one transaction; returns events sent.

        ``extra`` is one more (topic, value) record for partition 0, e.g. a heartbeat.
        """
        batches = self._done + [(t, p, b) for (t, p), b in self._open.items()]
        self._done, self._open = [], {}
        sent, self.pending_events = self.pending_events, 0
        async with self._producer.transaction():
            futures = [
                await self._producer.send(t, b.value(), key=b.first_key, partition=p)
                for t, p, b in batches
            ]
            if extra is not None:
                futures.append(await self._producer.send(extra[0], extra[1], partition=0))
            if futures:
                await asyncio.gather(*futures)
            fut = await self._producer.send(
                self._positions_topic, progress.to_bytes(), key=job_key(self._job), partition=0
            )
            await fut
        return sent
