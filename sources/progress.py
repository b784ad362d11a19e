"""A source job's committed progress: the last record for its key in the positions topic.

The progress record is produced inside the same Kafka transaction as the change records it
covers, and only after all of them were acknowledged, so a visible progress record always means
its changes were written, even on a broker that shows records of aborted transactions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.errors import TransientError
from sources.position import BinlogPosition


@dataclass(frozen=True)
class JobProgress:
    phase: str  # "snapshot" or "streaming"
    position: BinlogPosition | None  # where streaming resumes (when phase == "streaming")
    snapshot: dict[str, Any]  # snapshot bookkeeping: its position, rows and tables done

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "phase": self.phase,
                "position": self.position.to_json() if self.position else None,
                "snapshot": self.snapshot,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> JobProgress:
        d = orjson.loads(data)
        pos = BinlogPosition.from_json(d["position"]) if d.get("position") else None
        return cls(d["phase"], pos, d.get("snapshot") or {})


def job_key(job: str) -> bytes:
    return job.encode()


async def _high_watermarks(bootstrap: list[str], tps: list[TopicPartition]) -> dict[Any, int]:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    await probe.start()
    try:
        return dict(await probe.end_offsets(tps))
    finally:
        await probe.stop()


async def read_progress(
    bootstrap: list[str], topic: str, job: str, timeout_s: float = 60.0
) -> JobProgress | None:
    """The latest committed progress of ``job``, or None if it never committed any.

    Reads committed records up to the partition's *high* watermark, not to the last stable
    offset the read_committed consumer reports: every transaction open at the moment (other jobs
    share the partition) must end first, else the newest progress could be missed and the job
    would silently start over (measured on the embedded broker: a moved job re-snapshotted and
    the deletes in between never reached the target). Gives up with TransientError.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return None
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await _high_watermarks(bootstrap, tps)
        key = job_key(job)
        latest: JobProgress | None = None
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TransientError(
                    f"progress of job {job!r}: {topic} not readable up to {end} "
                    f"in {timeout_s:.0f}s (a transaction stays open)"
                )
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for msgs in batch.values():
                for m in msgs:
                    if m.key == key and m.value:
                        latest = JobProgress.from_bytes(m.value)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return latest
    finally:
        await consumer.stop()
