"""Source transactions as the job receives them: whole, or in parts of a bounded number of items.

A transaction of at most ``max_items`` row changes and statements is handed out whole when its
commit is read, and its items are placed at the commit's end position (row index = item index).
A larger one is handed out in parts as it is read, so neither the reader nor a Kafka transaction
ever holds all of it. Its commit position is not known until its last part, so the items of a
split transaction are placed at the end of the event that opened it (the MariaDB GTID event, or
``BEGIN``), again with the item index as row index. Both orders agree with the binlog's: a
transaction's events are contiguous in the binlog, and that anchor lies after the previous
transaction's commit and before this one's.

Resuming inside a split transaction: the job's progress is the transaction's first event with
``row = n`` (its items 0 … n-1 are committed). The reader starts there and ``skip`` drops those
n items, so every re-read item keeps the index, and therefore the position, it had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sources.position import BinlogPosition
from sources.schema import TableSchema


@dataclass
class RowChange:
    database: str
    table: str
    op: str  # "c", "u" or "d"
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    # The row's own shape, from its table map; None only without binlog_row_metadata=FULL.
    schema: TableSchema | None = None


@dataclass
class Statement:
    """A DDL (or other non-row) statement, with the session database it ran in."""

    sql: str
    database: str | None


@dataclass
class SourceTransaction:
    """A committed source transaction, or one part of a split one, in binlog order.

    ``position`` is where to resume after the transaction; None for a part that more parts
    follow. A split transaction's parts carry ``start`` (its first event: the restart point)
    and ``anchor`` (where its items are placed); ``first`` is the index of ``changes[0]``.
    """

    position: BinlogPosition | None
    ts_ms: int
    changes: list[RowChange | Statement] = field(default_factory=list)
    start: BinlogPosition | None = None
    anchor: BinlogPosition | None = None
    first: int = 0
    gtid: str | None = None  # the server's GTID of the transaction, where it has one

    @property
    def statements(self) -> list[Statement]:
        return [c for c in self.changes if isinstance(c, Statement)]

    @property
    def complete(self) -> bool:
        """The transaction's last (or only) part: its commit was read."""
        return self.position is not None

    def item_position(self, k: int) -> BinlogPosition:
        """The position of ``changes[k]``."""
        base = self.anchor if self.anchor is not None else self.position
        assert base is not None
        return BinlogPosition(base.file_seq, base.pos, self.first + k, base.file)

    def resume_point(self) -> BinlogPosition:
        """Where a restarted reader goes on after this part: the transaction's start with the
        number of its items done, or (the last part) the end of its commit."""
        if self.position is not None:
            return self.position
        assert self.start is not None
        done = self.first + len(self.changes)
        return BinlogPosition(self.start.file_seq, self.start.pos, done, self.start.file)


class TransactionParts:
    """Collects the items of the binlog's transactions and hands them out whole or in parts.

    The reader calls ``begin`` at the first event of a transaction, ``add`` for each item and
    ``end`` at its commit. When ``resume`` (where the reader started) has ``row = n``, the first
    n items of the transaction starting there are dropped, and that transaction is split
    whatever its size, as it was before.
    """

    def __init__(
        self,
        max_items: int,
        emit: Callable[[SourceTransaction], None],
        resume: BinlogPosition | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._max = max_items
        self._emit = emit
        self._resume = resume if resume is not None and resume.row else None
        self._items: list[RowChange | Statement] = []
        self._start: BinlogPosition | None = None
        self._anchor: BinlogPosition | None = None
        self._index = 0  # index in the transaction of the next item
        self._first = 0  # index of self._items[0]
        self._split = False
        self._drop = 0  # items of this transaction committed before a restart
        self._ts_ms = 0
        self.gtid: str | None = None  # of the open transaction, set by the reader

    @property
    def open(self) -> bool:
        return self._start is not None

    def begin(self, start: BinlogPosition, anchor: BinlogPosition) -> None:
        """A transaction opens with the event between ``start`` and ``anchor``."""
        self._start, self._anchor = start, anchor
        self._items, self._index, self._first = [], 0, 0
        self._split, self._drop = False, 0
        if self._resume is not None:
            # Only the first transaction, the one at the resume position, is resumed inside.
            resume, self._resume = self._resume, None
            if (start.file_seq, start.pos) != (resume.file_seq, resume.pos):
                raise ValueError(f"resume point {resume} is not where a transaction starts")
            self._split, self._drop = True, resume.row

    def add(self, item: RowChange | Statement, ts_ms: int) -> None:
        if self._index < self._drop:
            self._index += 1
            self._first = self._index
            return
        if len(self._items) >= self._max:
            self._split = True
            self._emit(self._part(None))
            self._items, self._first = [], self._index
        self._items.append(item)
        self._index += 1
        self._ts_ms = ts_ms

    def end(self, position: BinlogPosition, ts_ms: int) -> None:
        """The commit (or the standalone statement) that ends the transaction ends at
        ``position``."""
        self._ts_ms = ts_ms
        self._emit(self._part(position))
        self._items, self._start, self._anchor = [], None, None
        self._index = self._first = self._drop = 0
        self._split = False
        self.gtid = None

    def _part(self, position: BinlogPosition | None) -> SourceTransaction:
        if not self._split:
            return SourceTransaction(position, self._ts_ms, self._items, gtid=self.gtid)
        return SourceTransaction(
            position, self._ts_ms, self._items, self._start, self._anchor, self._first, self.gtid
        )
