"""Splitting source transactions into parts and resuming inside one, as pure logic.

The fake "binlog" is a list of transactions; each opens with an event ending 10 bytes after its
start and commits at ``start + 100``. Reading them through ``TransactionParts`` must place every
item exactly where a reader that never split or never stopped would agree on: once, in order,
and at the same position again after a restart inside a transaction.
"""

from __future__ import annotations

import pytest

from sources.position import BinlogPosition
from sources.txn_parts import RowChange, SourceTransaction, Statement, TransactionParts

FILE = "mysql-bin.000007"


def _row(i: int) -> RowChange:
    return RowChange("db", "t", "c", None, {"id": i})


def _feed(parts: TransactionParts, txns: list[tuple[int, list[RowChange | Statement]]]) -> None:
    """Feed transactions ``(start, items)`` as the reader would."""
    for start, items in txns:
        parts.begin(BinlogPosition.at(FILE, start), BinlogPosition.at(FILE, start + 10))
        for item in items:
            parts.add(item, 1000)
        parts.end(BinlogPosition.at(FILE, start + 100), 2000)


def _read(
    txns: list[tuple[int, list[RowChange | Statement]]],
    max_items: int,
    resume: BinlogPosition | None = None,
) -> list[SourceTransaction]:
    out: list[SourceTransaction] = []
    _feed(TransactionParts(max_items, out.append, resume), txns)
    return out


def _placed(emitted: list[SourceTransaction]) -> list[tuple[BinlogPosition, object]]:
    """Every item with its position, in emission order."""
    return [(t.item_position(k), c) for t in emitted for k, c in enumerate(t.changes)]


def test_a_transaction_within_the_limit_is_whole_and_placed_at_its_commit() -> None:
    items: list[RowChange | Statement] = [_row(i) for i in range(5)]
    [txn] = _read([(1000, items)], max_items=5)
    assert txn.complete and txn.start is None and txn.anchor is None
    assert txn.changes == items
    assert txn.resume_point() == BinlogPosition.at(FILE, 1100)
    assert [p for p, _ in _placed([txn])] == [BinlogPosition.at(FILE, 1100, i) for i in range(5)]


def test_a_large_transaction_comes_in_parts_of_at_most_max_items() -> None:
    items: list[RowChange | Statement] = [_row(i) for i in range(23)]
    emitted = _read([(1000, items)], max_items=5)
    assert [len(t.changes) for t in emitted] == [5, 5, 5, 5, 3]
    assert [t.complete for t in emitted] == [False] * 4 + [True]
    # Items keep their order and are placed after the opening event, by index.
    placed = _placed(emitted)
    assert [c for _, c in placed] == items
    assert [p for p, _ in placed] == [BinlogPosition.at(FILE, 1010, i) for i in range(23)]
    # Each part but the last resumes at the transaction's start with the items done.
    assert [t.resume_point() for t in emitted] == [
        BinlogPosition.at(FILE, 1000, 5),
        BinlogPosition.at(FILE, 1000, 10),
        BinlogPosition.at(FILE, 1000, 15),
        BinlogPosition.at(FILE, 1000, 20),
        BinlogPosition.at(FILE, 1100),
    ]


def test_positions_stay_ordered_across_whole_and_split_transactions() -> None:
    txns: list[tuple[int, list[RowChange | Statement]]] = [
        (1000, [_row(i) for i in range(3)]),  # whole: placed at 1100
        (1100, [_row(i) for i in range(12)]),  # split: placed at 1110
        (1200, [_row(i) for i in range(2)]),  # whole: placed at 1300
    ]
    positions = [p for p, _ in _placed(_read(txns, max_items=4))]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # A snapshot taken at the boundary before the split transaction, or after it, sorts
    # before every one of its items, or after every one.
    split = positions[3:15]
    assert BinlogPosition.at(FILE, 1100) < min(split)
    assert max(split) < BinlogPosition.at(FILE, 1200)


def test_statements_count_as_items_and_keep_their_place() -> None:
    items: list[RowChange | Statement] = [Statement("CREATE TABLE t (id INT)", "db")]
    items += [_row(i) for i in range(6)]
    emitted = _read([(1000, items)], max_items=4)
    placed = _placed(emitted)
    assert placed[0] == (BinlogPosition.at(FILE, 1010, 0), items[0])
    assert [c for _, c in placed] == items


@pytest.mark.parametrize("crash_after_part", [0, 1, 2, 3])
def test_resuming_inside_skips_exactly_what_was_committed(crash_after_part: int) -> None:
    txns: list[tuple[int, list[RowChange | Statement]]] = [
        (1000, [_row(i) for i in range(23)]),
        (1100, [_row(100 + i) for i in range(3)]),
    ]
    first = _read(txns, max_items=5)
    committed = first[: crash_after_part + 1]
    resume = committed[-1].resume_point()
    assert resume.row == 5 * (crash_after_part + 1)
    # The restarted reader starts at the transaction's first event.
    again = _read(txns, max_items=5, resume=resume)
    combined = _placed(committed) + _placed(again)
    # Nothing doubled, nothing lost, and re-read items are placed where they were first.
    assert combined == _placed(first)


def test_a_resumed_transaction_stays_split_even_if_the_rest_fits_a_larger_limit() -> None:
    items: list[RowChange | Statement] = [_row(i) for i in range(12)]
    first = _read([(1000, items)], max_items=5)
    again = _read([(1000, items)], max_items=1000, resume=first[0].resume_point())
    assert len(again) == 1 and again[0].complete
    assert _placed(first[:1]) + _placed(again) == _placed(first)


def test_the_resume_point_must_be_where_a_transaction_starts() -> None:
    parts = TransactionParts(5, lambda t: None, BinlogPosition.at(FILE, 1000, 5))
    with pytest.raises(ValueError, match="not where a transaction starts"):
        parts.begin(BinlogPosition.at(FILE, 1050), BinlogPosition.at(FILE, 1060))


def test_only_the_first_transaction_is_skipped_into() -> None:
    txns: list[tuple[int, list[RowChange | Statement]]] = [
        (1000, [_row(i) for i in range(8)]),
        (1100, [_row(i) for i in range(8)]),
    ]
    again = _read(txns, max_items=5, resume=BinlogPosition.at(FILE, 1000, 5))
    # The rest of the first (3 items), then the second one whole-size splitting (5 + 3).
    assert [len(t.changes) for t in again] == [3, 5, 3]
    assert again[0].first == 5 and again[1].first == 0


def test_a_commit_with_nothing_open_still_hands_out_its_position() -> None:
    out: list[SourceTransaction] = []
    TransactionParts(5, out.append).end(BinlogPosition.at(FILE, 1100), 0)
    assert [(t.position, t.changes) for t in out] == [(BinlogPosition.at(FILE, 1100), [])]
