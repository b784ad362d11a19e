"""The binlog reader in a process of its own, so parsing does not share the worker's GIL.

pymysqlreplication parses a small row event in a few hundred microseconds of pure Python; in a
thread of the worker that is more than everything else the worker does per change, and both
take turns on one core (docs/PERFORMANCE.md). Here a child process runs
:class:`sources.binlog.BinlogReader` and sends what it emits, in order, through a pipe; the
worker only unpickles. Same interface as the reader: :meth:`run` (blocking, in a thread of the
worker) hands every transaction to ``emit``, :meth:`stop` ends it.

- Batching: the child queues transactions; a busy reader sends every ``BATCH_SIZE`` of them in
  one message itself, and a sender thread sends what a quiet one queued within ``linger_s``.
- Schemas are sent once: a row's :class:`TableSchema` is replaced by a number in the pickle
  (``persistent_id``) and its first use sends it; the worker sees the same object for the same
  shape, as with the thread reader (sources/job.py compares them by identity first).
- Backpressure: the child holds at most ``max_queued_items`` unsent row changes; a worker that
  stops taking transactions stops the pipe, the sender, then the reader.
- Failures: an exception of the reader is sent after the transactions before it and raised in
  the worker; a child that dies is an error naming its exit code. The child gets SIGTERM when
  the worker's thread that started it ends (Linux), so it never outlives its job.
"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from app.broker import die_with_parent
from sources.handoff import ItemBudget
from sources.position import BinlogPosition
from sources.schema import TableSchema
from sources.txn_parts import SourceTransaction

logger = logging.getLogger(__name__)

_ITEMS, _SCHEMA, _ERROR = "items", "schema", "error"
# Transactions per message when the reader is busy; a quiet one sends what it has after linger_s.
BATCH_SIZE = 64


class ReaderProcess:
    def __init__(
        self,
        settings: dict[str, Any],
        server_id: int,
        start: BinlogPosition,
        wants: Callable[[str, str], bool],
        max_items: int = 20_000,
        linger_s: float = 0.002,
        max_queued_items: int = 20_000,
    ) -> None:
        self._args = (settings, server_id, start, wants, max_items, linger_s, max_queued_items)
        self._stopping = threading.Event()
        self._process: Any = None

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()

    def run(self, emit: Callable[[SourceTransaction], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_child,
            args=(sender, os.getpid(), *self._args),
            name="sluice-binlog-reader",
            daemon=True,
        )
        process.start()
        sender.close()  # the child holds the only writing end: its exit ends our reads
        self._process = process
        if self._stopping.is_set():
            process.terminate()
        schemas: dict[int, TableSchema] = {}
        try:
            while True:
                try:
                    data = receiver.recv_bytes()
                except (EOFError, OSError):
                    if self._stopping.is_set():
                        return
                    process.join(5)
                    raise RuntimeError(
                        f"binlog reader process ended unexpectedly (exit code {process.exitcode})"
                    ) from None
                kind, payload = pickle.loads(data)
                if kind == _SCHEMA:
                    sid, schema = payload
                    schemas[sid] = schema
                elif kind == _ITEMS:
                    for txn in _SchemaRefs.load(payload, schemas):
                        emit(txn)
                else:
                    raise payload
        finally:
            receiver.close()
            if process.is_alive():
                process.terminate()
            process.join(5)


class _SchemaRefs(pickle.Pickler):
    """Pickles row changes with each schema as a number, sending a schema at its first use."""

    def __init__(self, file: io.BytesIO, known: dict[int, int], send: Callable[..., None]):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self._known = known  # id(schema) -> number; the reader keeps its schemas alive
        self._send = send

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not TableSchema:
            return None
        sid = self._known.get(id(obj))
        if sid is None:
            sid = self._known[id(obj)] = len(self._known)
            self._send(_SCHEMA, (sid, obj))
        return sid

    @staticmethod
    def load(data: bytes, schemas: dict[int, TableSchema]) -> list[SourceTransaction]:
        unpickler = pickle.Unpickler(io.BytesIO(data))
        unpickler.persistent_load = schemas.__getitem__  # type: ignore[method-assign]
        loaded: list[SourceTransaction] = unpickler.load()
        return loaded


def _child(
    conn: Connection,
    parent_pid: int,
    settings: dict[str, Any],
    server_id: int,
    start: BinlogPosition,
    wants: Callable[[str, str], bool],
    max_items: int,
    linger_s: float,
    max_queued_items: int,
) -> None:
    if sys.platform.startswith("linux"):
        die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    from sources.binlog import BinlogReader

    queue: deque[SourceTransaction] = deque()
    budget = ItemBudget(max_queued_items)
    queued = threading.Event()
    done = threading.Event()
    known: dict[int, int] = {}
    kept: list[TableSchema] = []  # ids in ``known`` must not be reused by new objects

    def send(kind: str, payload: Any) -> None:
        if kind == _SCHEMA:
            kept.append(payload[1])
        conn.send_bytes(pickle.dumps((kind, payload), pickle.HIGHEST_PROTOCOL))

    sending = threading.Lock()  # one batch at a time, so batches leave in order

    def flush() -> None:
        with sending:
            batch = [queue.popleft() for _ in range(len(queue))]
            if not batch:
                return
            buf = io.BytesIO()
            _SchemaRefs(buf, known, send).dump(batch)
            send(_ITEMS, buf.getvalue())
        budget.release(sum(len(t.changes) for t in batch))

    def sender() -> None:
        while not done.is_set() or queue:
            queued.wait(0.5)
            done.wait(linger_s)  # let a busy reader add more to this message
            queued.clear()
            flush()

    def emit(txn: SourceTransaction) -> None:
        budget.acquire(len(txn.changes))
        queue.append(txn)
        if len(queue) >= BATCH_SIZE:
            flush()  # a busy reader sends itself: no hand-over to the sender thread
        elif not queued.is_set():
            queued.set()

    thread = threading.Thread(target=sender, name="sender", daemon=True)
    thread.start()
    reader = BinlogReader(settings, server_id, start, wants, max_items)
    failure: BaseException | None = None
    try:
        reader.run(emit)
    except BaseException as exc:
        failure = exc
    done.set()
    thread.join()
    if failure is not None:
        with contextlib.suppress(Exception):
            send(_ERROR, _picklable(failure))
    conn.close()


def _picklable(exc: BaseException) -> BaseException:
    """The exception itself if it survives a pickle round trip, else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"binlog reader: {type(exc).__name__}: {exc}")
