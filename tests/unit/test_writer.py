"""ChangeWriter batching, without a broker: partitioning, batch encoding and splitting.

White-box: the writer is built without a producer and its queued batches are inspected.
"""

from __future__ import annotations

import random
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from app.records import ChangeBatch, encode_key
from sources.schema import Column, TableSchema
from sources.writer import MAX_MESSAGE_BYTES, ChangeWriter, partition_for

SCHEMA = TableSchema(
    "shop",
    "orders",
    (
        Column("id", "bigint", "bigint(20)", False),
        Column("note", "varchar", "varchar(200)"),
        Column("price", "decimal", "decimal(12,2)"),
    ),
    ("id",),
)


def _writer() -> ChangeWriter:
    return ChangeWriter(None, "job-1", "sluice-positions")  # no producer: batching only


def _event(i: int, note: str = "n") -> dict[str, Any]:
    return {
        "op": "c",
        "key": {"id": i},
        "before": None,
        "after": {"id": i, "note": note, "price": f"{i}.50"},
        "pos": f"{1:08d}{1000 + i:012d}{0:09d}",
        "source": {
            "server_id": 1,
            "file": "binlog.000001",
            "pos": 1000 + i,
            "row": 0,
            "ts_ms": 1_700_000_000_000,
            "snapshot": False,
        },
    }


def _batches(w: ChangeWriter) -> list[tuple[str, int, Any]]:
    """Every queued batch in send order, as ``commit`` would send them."""
    return list(w._done) + [(t, p, b) for (t, p), b in w._open.items()]


def test_partition_for_matches_aiokafka_default_partitioner() -> None:
    rng = random.Random(0)
    partitioner = DefaultPartitioner()
    for n in (1, 2, 3, 7, 12, 64):
        all_partitions = list(range(n))
        for _ in range(1000):
            key = rng.randbytes(rng.randrange(0, 40))
            assert partition_for(key, n) == partitioner(key, all_partitions, all_partitions)
    # Keys as the pipeline builds them.
    for i in range(1000):
        key = encode_key([i, f"k{i}"])
        assert partition_for(key, 12) == partitioner(key, list(range(12)), [])


def test_batch_value_decodes_back_to_table_schema_and_events() -> None:
    w = _writer()
    head = ChangeWriter.batch_head("shop", "orders", SCHEMA.to_json())
    events = [_event(i, note=f'note {i} é "quoted" ,]}}') for i in range(5)]
    for ev in events:
        w.add("cdc.shop.orders", 1, b"[1]", ev, head)
    assert w.pending_events == 5
    [(topic, partition, batch)] = _batches(w)
    assert (topic, partition) == ("cdc.shop.orders", 0)
    assert batch.first_key == b"[1]"
    decoded = ChangeBatch.from_bytes(batch.value())
    assert decoded.database == "shop"
    assert decoded.table == "orders"
    assert decoded.schema == SCHEMA.to_json()
    assert TableSchema.from_json("shop", "orders", decoded.schema) == SCHEMA
    assert decoded.events == events
    # Same bytes as the records module's own encoding.
    assert ChangeBatch.from_bytes(decoded.to_bytes()) == decoded


def test_single_event_batch_decodes() -> None:
    w = _writer()
    head = ChangeWriter.batch_head("d", "t", {"columns": [], "pk": []})
    w.add("topic", 1, b"k", {"op": "d", "key": {}, "before": None, "after": None}, head)
    [(_, _, batch)] = _batches(w)
    assert ChangeBatch.from_bytes(batch.value()).events == [
        {"op": "d", "key": {}, "before": None, "after": None}
    ]


def test_events_are_grouped_by_partition_and_keep_their_order() -> None:
    w = _writer()
    head = ChangeWriter.batch_head("shop", "orders", SCHEMA.to_json())
    partitions = 6
    added: dict[int, list[dict[str, Any]]] = {}
    for i in range(300):
        key = encode_key([i])
        ev = _event(i)
        w.add("cdc.orders", partitions, key, ev, head)
        added.setdefault(partition_for(key, partitions), []).append(ev)
    batches = _batches(w)
    assert {p for _, p, _ in batches} == set(added)
    for topic, p, batch in batches:
        assert topic == "cdc.orders"
        # The message key places the whole batch where its first row belongs...
        assert partition_for(batch.first_key, partitions) == p
        events = ChangeBatch.from_bytes(batch.value()).events
        # ...and so does every other row of the batch.
        for ev in events:
            assert partition_for(encode_key([ev["key"]["id"]]), partitions) == p
        assert events == added[p]
    assert w.pending_events == 300


def test_a_different_table_on_the_same_partition_starts_a_new_batch() -> None:
    w = _writer()
    head_a = ChangeWriter.batch_head("shop", "a", SCHEMA.to_json())
    head_b = ChangeWriter.batch_head("shop", "b", SCHEMA.to_json())
    w.add("cdc", 1, b"1", _event(1), head_a)
    w.add("cdc", 1, b"2", _event(2), head_b)
    w.add("cdc", 1, b"3", _event(3), head_a)
    decoded = [ChangeBatch.from_bytes(b.value()) for _, _, b in _batches(w)]
    assert [(d.table, [e["key"]["id"] for e in d.events]) for d in decoded] == [
        ("a", [1]),
        ("b", [2]),
        ("a", [3]),
    ]


def test_a_changed_schema_starts_a_new_batch() -> None:
    w = _writer()
    wider = TableSchema(
        "shop", "orders", (*SCHEMA.columns, Column("extra", "int", "int(11)")), ("id",)
    )
    w.add("cdc", 1, b"1", _event(1), ChangeWriter.batch_head("shop", "orders", SCHEMA.to_json()))
    w.add("cdc", 1, b"2", _event(2), ChangeWriter.batch_head("shop", "orders", wider.to_json()))
    decoded = [ChangeBatch.from_bytes(b.value()) for _, _, b in _batches(w)]
    assert [d.schema for d in decoded] == [SCHEMA.to_json(), wider.to_json()]


def test_batches_split_before_exceeding_max_message_bytes() -> None:
    w = _writer()
    head = ChangeWriter.batch_head("shop", "orders", SCHEMA.to_json())
    events = [_event(i, note="x" * 9_973) for i in range(200)]  # ~10 kB each, ~2 MB in all
    for ev in events:
        w.add("cdc.orders", 1, b"[1]", ev, head)
    batches = _batches(w)
    assert len(batches) >= 4
    assert len(w._done) == len(batches) - 1
    decoded_events: list[dict[str, Any]] = []
    for topic, p, batch in batches:
        assert (topic, p) == ("cdc.orders", 0)
        value = batch.value()
        assert len(value) <= MAX_MESSAGE_BYTES
        decoded = ChangeBatch.from_bytes(value)
        assert (decoded.database, decoded.table) == ("shop", "orders")
        decoded_events.extend(decoded.events)
    # Every full batch was closed only because the next event would not fit.
    for _, _, batch in batches[:-1]:
        assert len(batch.value()) + 10_000 > MAX_MESSAGE_BYTES
    # Nothing lost, nothing doubled, order kept.
    assert decoded_events == events


def test_an_event_larger_than_the_limit_gets_a_batch_of_its_own() -> None:
    w = _writer()
    head = ChangeWriter.batch_head("shop", "orders", SCHEMA.to_json())
    w.add("cdc", 1, b"1", _event(1), head)
    w.add("cdc", 1, b"2", _event(2, note="y" * (MAX_MESSAGE_BYTES + 10)), head)
    w.add("cdc", 1, b"3", _event(3), head)
    decoded = [ChangeBatch.from_bytes(b.value()) for _, _, b in _batches(w)]
    assert [[e["key"]["id"] for e in d.events] for d in decoded] == [[1], [2], [3]]


def test_batch_head_is_the_start_of_a_json_object() -> None:
    head = ChangeWriter.batch_head("shop", "orders", {"columns": [["id", "int", "int", False]]})
    assert head.startswith(b"{")
    assert head.endswith(b',"events":[')
    assert ChangeBatch.from_bytes(head + b"]}") == ChangeBatch(
        "shop", "orders", {"columns": [["id", "int", "int", False]]}, []
    )
