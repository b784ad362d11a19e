"""Check CDC messages and hand them to the sinks.

A message that cannot be decoded goes to the dead-letter topic with the reason; the stream goes
on. Good messages are forwarded unchanged to the delivery topic, in the same partition, so the
order per key holds. Schema-change (op "s") and truncate (op "t") events pass like row changes:
they carry a position and no row, and their source wrote one to every partition, so forwarding
partition by partition keeps each exactly between the rows around it (app/records.py). This
agent never drops a change on the strength of its own table state: under a crash that state may
hold updates whose outputs were aborted, and dropping on it would lose them. Duplicates are
made harmless where they land, by source position.
"""

from __future__ import annotations

import logging

from faust import StreamT

from agents.dead_letters import send_dead_letter
from agents.topics import cdc, delivery
from app.main import app, pipeline, settings
from app.records import CONTROL_OPS, ROW_OPS, ChangeBatch, decode
from app.topics import HEARTBEAT_SUFFIX
from tables.partition_progress import partition_progress

logger = logging.getLogger(__name__)
_KNOWN_OPS = ROW_OPS | CONTROL_OPS
# A group that runs no sink (SLUICE_SINKS empty: a source-only group beside sink groups) has no
# reader of its delivery topic, so it forwards nothing; it still checks and counts.
FORWARD = any(settings.runs_sink(s.name) for s in pipeline.sinks)


@app.agent(cdc)
async def check_changes(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        msg = event.message
        if msg.topic.endswith(HEARTBEAT_SUFFIX):  # an idle source job is alive at this point
            beat = decode(msg.value)
            partition_progress[f"{msg.topic}/{msg.partition}"] = {
                "heartbeat_ts_ms": beat["ts_ms"],
                "source_position": beat["position"],
            }
            continue
        try:
            batch = ChangeBatch.from_bytes(msg.value)
            newest = max(ev["pos"] for ev in batch.events)
            unknown = {ev.get("op") for ev in batch.events} - _KNOWN_OPS
            if unknown:
                raise ValueError(f"unknown op {sorted(map(str, unknown))}")
        except Exception as exc:
            await send_dead_letter(msg, f"undecodable change batch: {type(exc).__name__}: {exc}")
            continue
        if FORWARD:
            await delivery.send(key=msg.key, value=msg.value, partition=msg.partition)
        key = f"{msg.topic}/{msg.partition}"
        seen = partition_progress[key]
        partition_progress[key] = {
            "events": seen.get("events", 0) + len(batch.events),
            "position": max(newest, seen.get("position", "")),
            "offset": msg.offset,
        }
