"""Running a binlog reader (thread or process) in a test and collecting what it hands out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sources.position import BinlogPosition
from sources.txn_parts import SourceTransaction


def run_reader(
    reader: Any, emit: Callable[[SourceTransaction], None], timeout: float
) -> list[BaseException]:
    """``reader.run(emit)`` in a thread until it returns; what it raised, if anything."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            reader.run(emit)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the reader did not end"
    return failure


def read_until(reader: Any, until: BinlogPosition, timeout: float = 60) -> list[SourceTransaction]:
    """Everything ``reader`` hands out up to the transaction ending at ``until``."""
    out: list[SourceTransaction] = []

    def emit(txn: SourceTransaction) -> None:
        out.append(txn)
        if txn.position is not None and txn.position >= until:
            reader.stop()

    failure = run_reader(reader, emit, timeout)
    assert not failure, failure
    return out
