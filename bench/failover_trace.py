"""What happened after a failover kill, read back from the broker and the survivor's log.

At the kill the failover phase records the end offsets of the CDC, delivery and positions
topics; afterwards these functions read the records written since and place each step on a
timeline, in seconds after the kill: the survivor's group join and job start, the first change
written after the kill in the CDC topic and in the delivery topic, the job's progress records
around the kill. It is how the cause of the failover time was found (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from bench.procs import Worker
from bench.stack import JOB


def kafka_topics(app_id: str) -> list[str]:
    a = app_id
    return [f"{a}.bench.orders", f"{a}-delivery", f"{a}-sinks-delivery", f"{a}-positions"]


def kafka_offsets(bootstrap: str, app_id: str) -> dict[str, int]:
    """End offsets (log end, read_uncommitted) of the CDC, delivery and positions topics."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> dict[str, int]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            have = await c.topics()
            tps = [
                TopicPartition(t, p)
                for t in kafka_topics(app_id)
                if t in have
                for p in sorted(c.partitions_for_topic(t) or ())
            ]
            ends = await c.end_offsets(tps)
            return {f"{tp.topic}[{tp.partition}]": int(v) for tp, v in ends.items()}
        finally:
            await c.stop()

    try:
        return asyncio.run(asyncio.wait_for(read(), 20))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}  # type: ignore[dict-item]


def kafka_records(bootstrap: str, since: dict[str, int], back: int = 0) -> dict[str, list[Any]]:
    """Records of those topics from ``since`` (minus ``back`` per partition) to their end:
    (timestamp, offset, partition, key, value) per topic, read_uncommitted (the embedded
    broker shows aborted records anyway)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> dict[str, list[Any]]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            tps = {}
            for name, off in since.items():
                topic, _, part = name.rpartition("[")
                tps[TopicPartition(topic, int(part.rstrip("]")))] = max(0, off - back)
            c.assign(list(tps))
            for tp, off in tps.items():
                c.seek(tp, off)
            ends = await c.end_offsets(list(tps))
            out: dict[str, list[Any]] = {}
            left = {tp for tp in tps if ends[tp] > tps[tp]}
            deadline = time.monotonic() + 60
            while left and time.monotonic() < deadline:
                batch = await c.getmany(*left, timeout_ms=500)
                for tp, msgs in batch.items():
                    for m in msgs:
                        out.setdefault(tp.topic, []).append(
                            (m.timestamp / 1000, m.offset, tp.partition, m.key, m.value)
                        )
                for tp in list(left):
                    if await c.position(tp) >= ends[tp]:
                        left.discard(tp)
            return out
        finally:
            await c.stop()

    return asyncio.run(asyncio.wait_for(read(), 90))


def failover_timeline(
    bootstrap: str,
    app_id: str,
    survivor: Worker,
    t_kill: float,
    kill_pos: tuple[str, int],
    offsets: dict[str, int],
    samples: list[dict[str, Any]],
    t_flow: float | None,
) -> dict[str, Any]:
    """Seconds after the kill at which each step happened: the survivor's group join and
    job start (its log), the first change written after the kill in the CDC topic (its
    record's produce time) and in the delivery topic (the CDC agent's forward), and in the
    target; the job's progress records around the kill; where the job resumed."""

    def after(t: float | None) -> float | None:
        return None if t is None else round(t - t_kill, 2)

    out: dict[str, Any] = {}
    for needle in ("Heartbeat failed", "Joined group", "Starting", "source job bench starts",
                   "Recovery complete", "Worker ready"):  # fmt: skip
        hit = next((line for line in survivor.log_lines_since(t_kill) if needle in line), None)
        if hit is not None:
            out[f"log:{needle}"] = after(line_time(hit))
    if "error" in offsets:
        out["kafka"] = offsets["error"]
        return out
    try:
        recs = kafka_records(bootstrap, offsets, back=0)
        progress_recs = kafka_records(
            bootstrap, {k: v for k, v in offsets.items() if "-positions[" in k}, back=30
        )
    except Exception as exc:
        out["kafka"] = f"{type(exc).__name__}: {exc}"
        return out
    a = app_id
    for label, topic in (
        ("cdc", f"{a}.bench.orders"),
        ("delivery", f"{a}-delivery"),
        ("sinks_delivery", f"{a}-sinks-delivery"),
    ):
        first: tuple[float, int, int] | None = None
        n_msgs = n_after = 0
        for ts, off, part, _key, value in recs.get(topic, []):
            n_msgs += 1
            try:
                events = orjson.loads(value).get("events") or []
            except Exception:
                continue
            if any(
                (e["source"]["file"], int(e["source"]["pos"])) > kill_pos
                for e in events
                if e.get("source")
            ):
                n_after += 1
                if first is None or ts < first[0]:
                    first = (ts, part, off)
        if n_msgs:
            out[f"{label}_records_since_kill"] = n_msgs
            out[f"{label}_records_with_new_changes"] = n_after
            if first is not None:
                out[f"{label}_first_new_change_s"] = after(first[0])
                out[f"{label}_first_new_change_at"] = f"[{first[1]}]@{first[2]}"
    progress = []
    for ts, off, _part, key, value in progress_recs.get(f"{a}-positions", []):
        if key != JOB.encode() or not value:
            continue
        d = orjson.loads(value)
        pos = d.get("position") or {}
        progress.append(
            {"t": after(ts), "offset": off, "phase": d.get("phase"),
             "position": f"{pos.get('file')}:{pos.get('pos')}" if pos else None}
        )  # fmt: skip
    out["progress_records"] = progress
    before = [p for p in progress if p["t"] is not None and p["t"] <= 0]
    later = [p for p in progress if p["t"] is not None and p["t"] > 0]
    if before:
        out["last_progress_before_kill"] = before[-1]
        out["resume_bytes_behind_kill_binlog"] = bytes_behind(before[-1]["position"], kill_pos)
    if later:
        out["first_progress_after_kill"] = later[0]
    passed = next(
        (p for p in later if p["position"] and (bytes_behind(p["position"], kill_pos) or 0) < 0),
        None,
    )
    if passed is not None:
        out["job_committed_past_kill_position_s"] = passed["t"]
    first_stream = next((s for s in samples if s.get("phase") == "streaming"), None)
    if first_stream is not None:
        out["survivor_streaming_s"] = first_stream["t"]
        out["survivor_first_seen_position"] = first_stream["position"]
    out["target_s"] = after(t_flow)
    return out


def line_time(line: str) -> float | None:
    from datetime import datetime

    if not line.startswith("[") or len(line) < 25:
        return None
    try:
        return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def bytes_behind(position: str | None, binlog: tuple[str, int]) -> int | None:
    """Binlog bytes from ``position`` ("file:pos[#row]") to ``binlog`` (same file only;
    negative: the position is past it)."""
    if not position or ":" not in position:
        return None
    file, _, rest = position.rpartition(":")
    pos = int(rest.split("#", 1)[0])
    if file != binlog[0]:
        return None
    return binlog[1] - pos
