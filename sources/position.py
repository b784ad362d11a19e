"""Source positions: where a change came from, totally ordered per source server.

The position is the idempotency key of the whole pipeline: every stateful step applies a change
only if its position is newer than what it already holds for that key. A binlog change is placed
at the end of its transaction's commit event plus its row index inside the transaction (a
transaction too large for one Kafka transaction: at the end of the event that opened it, see
sources/txn_parts.py); a snapshot row is placed at the snapshot's binlog position with row index
0, so it sorts after every change the snapshot saw and before every change it did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_FILE_SEQ = re.compile(r"\.(\d+)$")


def binlog_file_seq(name: str) -> int:
    """The sequence number of a binlog file (``mysql-bin.000042`` → 42)."""
    m = _FILE_SEQ.search(name)
    if not m:
        raise ValueError(f"not a binlog file name: {name!r}")
    return int(m.group(1))


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A point in one server's binlog: after the event that ends at ``pos`` in ``file``.

    ``row`` orders the rows of one transaction. A resume point has ``row == 0`` at a
    transaction boundary; ``row == n`` means "inside the split transaction whose first event
    starts at ``pos``: its first n items (indexes 0 … n-1) are committed".
    """

    file_seq: int
    pos: int
    row: int = 0
    file: str = ""

    @classmethod
    def at(cls, file: str, pos: int, row: int = 0) -> BinlogPosition:
        return cls(binlog_file_seq(file), pos, row, file)

    def key(self) -> str:
        """Fixed-width digits: compares like the position in any collation, in any database."""
        return f"{self.file_seq:08d}{self.pos:012d}{self.row:09d}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "pos": self.pos, "row": self.row}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BinlogPosition:
        return cls.at(d["file"], int(d["pos"]), int(d.get("row", 0)))

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}" + (f"#{self.row}" if self.row else "")
