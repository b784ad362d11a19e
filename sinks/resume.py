"""``consistency: exactly_once``: resume strictly from the stored progress, if it is still true.

A SQL sink stores, per topic partition and in the transaction of the rows, the last offset it
applied and the *anchor* of the record at that offset: the SHA-256 of the message value. Offsets
name records only within one incarnation of a topic; a topic deleted and created again (or an
embedded broker restarted empty) reuses them for other records. So, on the first message of a
partition after each assignment, :func:`check` reads the record at the stored offset back from
the broker (a short-lived consumer, assign + seek, ``read_committed``) and compares anchors:

- same record: messages at or below the stored offset are skipped without being applied
  (``SqlTarget.resume_from``); nothing more is paid per record than an offset comparison;
- missing or different: the topic is not the one the progress was stored for. A warning names
  the sink, topic and partition, the stored progress is dropped and every message is applied:
  position versioning (``_sluice_pos``, tombstones, the append log's primary key) makes that safe,
  as it does under ``at_least_once``.

Cost: one fetch per partition per assignment, plus one progress read from the target.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from sinks.sql import SqlTarget, anchor_of

__all__ = ["anchor_of", "check", "record_anchor"]

logger = logging.getLogger(__name__)


async def record_anchor(
    bootstrap_servers: str | list[str], topic: str, partition: int, offset: int, timeout_s: float
) -> str | None:
    """The anchor of the committed record at ``offset``, or None if there is none."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        # An offset past the log's end is an error, not a jump to the end.
        auto_offset_reset="none",
        group_id=None,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            try:
                got = await consumer.getmany(tp, timeout_ms=int(min(left, 1.0) * 1000))
            except OffsetOutOfRangeError:
                return None  # the partition's log is shorter (or starts later): another topic
            for record in got.get(tp, []):
                # Past it: the record is gone (aborted, compacted) or the topic is another one.
                return anchor_of(record.value) if record.offset == offset else None
            end = consumer.highwater(tp)  # known after the first fetch, records or not
            if end is not None and end <= offset:
                return None  # the log ends before it: another, shorter topic
        return None
    finally:
        await consumer.stop()


async def check(
    target: SqlTarget,
    bootstrap_servers: str | list[str],
    topic: str,
    partition: int,
    timeout_s: float = 10.0,
) -> None:
    """Set ``target.resume_from`` for a newly assigned partition, or drop stale progress."""
    stored = await asyncio.to_thread(target.stored_anchor, topic, partition)
    if stored is None:
        target.resume_from.pop((topic, partition), None)
        return
    offset, anchor = stored
    found = await record_anchor(bootstrap_servers, topic, partition, offset, timeout_s)
    if anchor is not None and found == anchor:
        target.resume_from[(topic, partition)] = offset
        logger.info(
            "sink %s: %s[%d] resumes after offset %d (anchor verified)",
            target.config.name,
            topic,
            partition,
            offset,
        )
        return
    reason = "is missing" if found is None else "differs"
    logger.warning(
        "sink %s: the record at stored offset %d of %s[%d] %s: the topic was recreated; "
        "dropping that progress and applying every message (position versioning keeps the "
        "target right)",
        target.config.name,
        offset,
        topic,
        partition,
        reason,
    )
    await asyncio.to_thread(target.drop_progress, topic, partition)
