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
