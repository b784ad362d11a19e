"""The rebalance fix: every assignment gets fresh transactional producers (pure logic, fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import Any

from faust.types import TP

from app.faust_compat import _on_rebalance


class FakeProducer:
    def __init__(self, existing: list[str]) -> None:
        self._transaction_producers: dict[str, object] = {t: object() for t in existing}
        self.calls: list[tuple[str, str]] = []

    async def stop_transaction(self, transactional_id: str) -> None:
        self.calls.append(("stop", transactional_id))
        self._transaction_producers.pop(transactional_id, None)

    async def maybe_begin_transaction(self, transactional_id: str) -> None:
        self.calls.append(("start", transactional_id))
        self._transaction_producers[transactional_id] = object()


class FakeManager:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.log = self

    def info(self, *args: Any) -> None:
        pass

    def _tps_to_transactional_ids(self, tps: Set[TP]) -> set[str]:
        return {f"app-0-{tp.partition}" for tp in tps}


def test_kept_partitions_get_a_fresh_producer() -> None:
    # The worker owned partitions 0 and 1, keeps 1 and gains 2. A producer kept for partition 1
    # may have been fenced by a worker that owned it during a generation this one missed.
    producer = FakeProducer(["app-0-0", "app-0-1"])
    assigned = {TP("t", 1), TP("t", 2)}
    asyncio.run(_on_rebalance(FakeManager(producer), assigned, {TP("t", 0)}, {TP("t", 2)}))
    stops = {t for op, t in producer.calls if op == "stop"}
    starts = [t for op, t in producer.calls if op == "start"]
    assert stops == {"app-0-0", "app-0-1"}
    assert starts == ["app-0-1", "app-0-2"]
    # Every stop comes before any start, so no new producer is stopped by mistake.
    assert [op for op, _ in producer.calls] == ["stop", "stop", "start", "start"]
    assert set(producer._transaction_producers) == {"app-0-1", "app-0-2"}


def test_a_fetch_sees_the_active_partitions_of_its_start(monkeypatch: Any) -> None:
    # Faust mutates its set of active partitions while a fetch waits; an empty set means "every
    # partition" to aiokafka. The fetch must get a copy, and no fetch happens for an empty set.
    from app import faust_compat

    seen: list[set[TP]] = []

    async def fetch(self: Any, active: set[TP] | None, timeout: float) -> dict[TP, list[int]]:
        assert active is not None
        seen.append(active)
        live.clear()  # recovery pauses the changelog partitions meanwhile
        return {tp: [0] for tp in active}

    monkeypatch.setattr(faust_compat, "_faust_getmany", fetch)
    live = {TP("changelog", 0)}
    got = asyncio.run(faust_compat._getmany(object(), live, 1.0))
    assert got == {TP("changelog", 0): [0]} and seen == [{TP("changelog", 0)}]
    assert seen[0] is not live
    assert asyncio.run(faust_compat._getmany(object(), live, 1.0)) == {}
    assert len(seen) == 1


class FakeBuffer:
    """Faust's ProducerBuffer as the flush sees it: a queue and the message being sent."""

    state = "running"

    def __init__(self) -> None:
        self.message_sent = asyncio.Event()
        self.size = 0
        self.sent: list[str] = []


def test_flush_waits_for_the_message_being_sent() -> None:
    from app.faust_compat import _buffer_flush, _buffer_send_pending

    class Channel:
        async def publish_message(self, fut: Any, wait: bool) -> None:
            await asyncio.sleep(0.3)  # e.g. waiting for the producer's transaction lock
            buffer.sent.append(fut.name)
            buffer.message_sent.set()

    class Fut:
        name = "changelog write"

        class message:  # the attribute path Faust uses: fut.message.channel
            channel = Channel()

    buffer = FakeBuffer()

    async def main() -> None:
        sending = asyncio.create_task(_buffer_send_pending(buffer, Fut()))
        await asyncio.sleep(0)  # taken off the queue: size 0, one in flight
        await _buffer_flush(buffer)
        assert buffer.sent == ["changelog write"]
        await sending

    asyncio.run(main())


def test_the_last_commit_comes_after_the_buffer_is_flushed(monkeypatch: Any) -> None:
    # At revocation Faust ends the transactions; table writes still in the producer buffer must
    # be sent inside them, so the buffer is flushed first.
    from app import faust_compat

    calls: list[str] = []

    class Buffer:
        async def flush(self) -> None:
            calls.append("flush")

    class Consumer:
        class app:
            class _producer:
                buffer = Buffer()

    async def commit_and_end(self: Any) -> None:
        calls.append("commit and end")

    monkeypatch.setattr(faust_compat, "_faust_commit_and_end", commit_and_end)
    asyncio.run(faust_compat._commit_and_end_transactions(Consumer()))
    assert calls == ["flush", "commit and end"]


def test_the_worker_consumer_gets_the_configured_fetch_wait(monkeypatch: Any) -> None:
    from app import faust_compat

    class AiokafkaConsumer:
        _fetch_max_wait_ms = 1500  # Faust's fixed value

    monkeypatch.setattr(
        faust_compat, "_faust_create_worker_consumer", lambda s, t: AiokafkaConsumer()
    )
    monkeypatch.setattr(faust_compat, "_fetch_max_wait_ms", 100)
    assert faust_compat._create_worker_consumer(object(), object())._fetch_max_wait_ms == 100
    monkeypatch.setattr(faust_compat, "_fetch_max_wait_ms", None)
    assert faust_compat._create_worker_consumer(object(), object())._fetch_max_wait_ms == 1500


class FakeOffsets:
    """The offset bookkeeping of Faust's Consumer, driven as ``_drain_messages`` and ``ack``
    drive it: a gap for every jump in offsets (Faust's own ``_add_gap``), then the ack."""

    def __init__(self, committed: int | None = None) -> None:
        from collections import defaultdict

        from intervaltree import IntervalTree

        self._acked: dict[TP, list[int]] = defaultdict(list)
        self._acked_index: dict[TP, set[int]] = defaultdict(set)
        self._gap: dict[TP, Any] = defaultdict(IntervalTree)
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: committed)
        self._read: int | None = committed

    def read_and_ack(self, tp: TP, offset: int) -> None:
        from faust.transport.consumer import Consumer

        if self._read and offset - self._read > 1:
            asyncio.run(Consumer._add_gap(self, tp, self._read + 1, offset))  # type: ignore[arg-type]
        self._read = offset
        self._acked[tp].append(offset)
        self._acked_index[tp].add(offset)

    def commit(self, new_offset: Any, tp: TP) -> int | None:
        offset = new_offset(self, tp)
        committed = self._committed_offset[tp]
        if offset is not None and (committed is None or offset > committed):
            self._committed_offset[tp] = offset
        return self._committed_offset[tp]


def test_commits_reach_the_end_of_a_transactional_topic() -> None:
    # A transactional topic: each record is followed by its transaction's commit marker, an
    # offset no consumer receives (records at 10, 12, 14, ...). Faust's own _new_offset moved
    # the committed offset 2 on per commit (a duplicate offset stops its run); every rebalance
    # then re-read all the rest (bench failover: ~24,000 changes re-applied).
    from faust.transport.consumer import Consumer

    from app.faust_compat import _new_offset

    tp = TP("cdc", 0)
    for new_offset, expect in ((Consumer._new_offset, "behind"), (_new_offset, "at end")):
        c = FakeOffsets(committed=10)
        for second in range(10):  # ten records per second, one commit a second
            for k in range(10):
                c.read_and_ack(tp, 10 + 2 * (10 * second + k))
            committed = c.commit(new_offset, tp)
        last = 10 + 2 * 99
        if expect == "behind":
            assert committed is not None and committed < last - 100  # the bug, measured
        else:
            assert committed == last + 1
            assert c._acked[tp] == [] and not c._acked_index[tp]


def test_no_commit_past_the_newest_acknowledged_message() -> None:
    # Agents acknowledge a partition's messages in order; one read but still being processed
    # (here 18, its gap already recorded) is never covered by a commit.
    from app.faust_compat import _new_offset

    tp = TP("cdc", 0)
    c = FakeOffsets(committed=10)
    for offset in (10, 12, 14):
        c.read_and_ack(tp, offset)
    assert c.commit(_new_offset, tp) == 15
    c.read_and_ack(tp, 16)
    c.read_and_ack(tp, 18)
    c._acked[tp].remove(18)
    c._acked_index[tp].discard(18)
    assert c.commit(_new_offset, tp) == 17
    c._acked[tp].append(18)
    c._acked_index[tp].add(18)
    assert c.commit(_new_offset, tp) == 19
