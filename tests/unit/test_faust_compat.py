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
