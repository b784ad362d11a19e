"""The sink agent: applies checked changes to every SQL sink of the pipeline, batch by batch.

Database work runs in a thread so the event loop keeps heartbeating. An unreachable target is
retried with backoff and nothing moves on meanwhile. A change the target refuses for good
(constraint violation, value out of range) is isolated event by event and sent to the dead-letter
topic with the reason; everything else in the batch is applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import sqlalchemy.exc as sa_exc
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faust import StreamT

from agents.dead_letters import send_dead_letter
from agents.topics import delivery
from app import faults
from app.errors import PoisonRecord
from app.main import app, pipeline, settings
from app.pipeline import DebeziumSink, SqlSink
from app.records import ChangeBatch
from app.status import STATUS, SinkStatus
from sinks import resume
from sinks.debezium import DebeziumTarget
from sinks.sql import IncomingBatch, SqlTarget
from sources.schema import TableSchema

logger = logging.getLogger(__name__)

_targets: dict[str, SqlTarget | DebeziumTarget] = {}
# The sinks this worker group writes (SLUICE_SINKS); fan-out runs one group per sink.
ACTIVE_SINKS = [s for s in pipeline.sinks if settings.runs_sink(s.name)]
# exactly_once sinks: the topic partitions whose stored progress was checked since the last
# assignment (sinks/resume.py); a rebalance makes every partition be checked again.
_checked: dict[str, set[tuple[str, int]]] = {}
_TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    KafkaConnectionError,
    KafkaTimeoutError,
)


async def _target(name: str) -> SqlTarget | DebeziumTarget:
    target = _targets.get(name)
    if target is None:
        config = next(s for s in pipeline.sinks if s.name == name)
        if isinstance(config, DebeziumSink):
            dbz = DebeziumTarget(config, settings.bootstrap_servers, settings.topic_partitions)
            await dbz.start()
            target = _targets[name] = dbz
        else:
            target = _targets[name] = await asyncio.to_thread(SqlTarget, config)
    return target


async def _apply_retrying(name: str, batches: list[IncomingBatch], status: SinkStatus) -> int:
    delay = 0.5
    while True:
        try:
            target = await _target(name)
            if isinstance(target, DebeziumTarget):
                return await target.apply(batches)
            return await asyncio.to_thread(target.apply, batches)
        except _TRANSIENT as exc:
            status.retries += 1
            status.last_error = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("sink %s: target unavailable (%s); retry in %.1fs", name, exc, delay)
            _targets.pop(name, None)
            _checked.pop(name, None)  # a new target knows no resume offsets: check again
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _apply_isolating(
    name: str, batches: list[IncomingBatch], messages: list[Any], status: SinkStatus
) -> int:
    """Apply; on a permanent refusal, retry event by event and dead-letter the refused ones."""
    try:
        return await _apply_retrying(name, batches, status)
    except (sa_exc.SQLAlchemyError, PoisonRecord, TypeError, ValueError) as exc:
        logger.warning("sink %s: batch refused (%s); isolating the bad changes", name, exc)
    applied = 0
    for batch, message in zip(batches, messages, strict=True):
        for ev in batch.events:
            single = replace(batch, events=[ev])
            try:
                applied += await _apply_retrying(name, [single], status)
            except (sa_exc.SQLAlchemyError, PoisonRecord, TypeError, ValueError) as exc:
                reason = f"sink {name}: {type(exc).__name__}: {exc}".splitlines()[0][:1000]
                await send_dead_letter(message, f"{reason} (position {ev['pos']})")
                status.dead_letters += 1
    return applied


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    _checked.clear()


async def _check_resume(sink: SqlSink, batches: list[IncomingBatch], status: SinkStatus) -> None:
    """exactly_once: on a partition's first message since the assignment, check its progress."""
    checked = _checked.setdefault(sink.name, set())
    for tp in dict.fromkeys((b.topic, b.partition) for b in batches):
        if tp in checked:
            continue
        delay = 0.5
        while True:
            try:
                target = await _target(sink.name)
                assert isinstance(target, SqlTarget)
                await resume.check(target, settings.bootstrap_servers, *tp)
                break
            except _TRANSIENT as exc:
                status.retries += 1
                logger.warning("sink %s: cannot check progress (%s); retry", sink.name, exc)
                _targets.pop(sink.name, None)
                checked.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except (PoisonRecord, sa_exc.SQLAlchemyError, KafkaError) as exc:
                # Unchecked, nothing is skipped: every message is applied, as at_least_once.
                logger.warning(
                    "sink %s: progress of %s[%d] not checked (%s); applying every message",
                    sink.name,
                    *tp,
                    exc,
                )
                built = _targets.get(sink.name)
                if isinstance(built, SqlTarget):
                    built.resume_from.pop(tp, None)
                break
        checked.add(tp)


def _from_source(sink: SqlSink | DebeziumSink, batches: list[IncomingBatch]) -> list[IncomingBatch]:
    """The sink's own source's changes; other batches still count for its progress, empty."""
    tables = pipeline.source(sink.source).tables
    return [b if tables.matches(b.database, b.table) else replace(b, events=[]) for b in batches]


def _decode(message: Any) -> IncomingBatch:
    b = ChangeBatch.from_bytes(message.value)
    return IncomingBatch(
        message.topic,
        message.partition,
        message.offset,
        b.database,
        b.table,
        TableSchema.from_json(b.database, b.table, b.schema),
        b.events,
        value=message.value,
    )


@app.agent(delivery)
async def deliver(stream: StreamT[bytes]) -> None:
    for sink in ACTIVE_SINKS:
        STATUS.sinks.setdefault(sink.name, SinkStatus(sink.name))
    take_events: Any = stream.take_events  # type: ignore[attr-defined]  # untyped in faust 0.15
    async for events in take_events(settings.sink_batch_size, within=settings.sink_batch_within_s):
        batches: list[IncomingBatch] = []
        messages: list[Any] = []
        for event in events:
            try:
                batches.append(_decode(event.message))
                messages.append(event.message)
            except Exception as exc:
                await send_dead_letter(event.message, f"undecodable: {exc}")
        for sink in ACTIVE_SINKS:
            status = STATUS.sinks[sink.name]
            faults.checkpoint("sink_before_write")
            mine = _from_source(sink, batches)
            if isinstance(sink, SqlSink) and sink.consistency == "exactly_once":
                await _check_resume(sink, mine, status)
            applied = await _apply_isolating(sink.name, mine, messages, status)
            # Written and committed in the target, offsets not yet committed in Kafka.
            faults.checkpoint("sink_after_write")
            status.batches += 1
            status.changes_applied += applied
            status.last_write_at = time.time()
