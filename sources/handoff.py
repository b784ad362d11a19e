"""A bounded channel from the binlog reader's thread to the job's event loop.

The reader parses one small transaction in a few hundred microseconds; waking the event loop for
each (``run_coroutine_threadsafe``: a self-pipe write, a task, a future) cost more than the parse
itself in the profile (docs/PERFORMANCE.md): mostly the reader waiting for the GIL that the woken
loop took. Here the thread appends to a deque; the waiting loop looks every ``poll_s`` (10 ms of
latency at most) and is woken only when a batch of ``wake_at`` items piled up; a busy loop
drains everything queued at once.
A semaphore bounds the transactions in flight and an :class:`ItemBudget` their row changes (parts
of a large transaction are large), so a slow pipeline holds the reader back instead of filling
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int = 2000,
        wake_at: int = 256,
        poll_s: float = 0.01,
    ) -> None:
        self._loop = loop
        self._wake_at = min(wake_at, capacity)
        self._poll_s = poll_s
        self._items: deque[T | BaseException] = deque()
        self._room = threading.Semaphore(capacity)
        self._ready = asyncio.Event()
        self._waiting = False
        self._closed = threading.Event()

    def put(self, item: T | BaseException) -> None:
        """From the producing thread; blocks while the channel is full (until it is closed)."""
        while not self._room.acquire(timeout=0.5):
            if self._closed.is_set():
                return
        self._items.append(item)
        # Read after the append: a loop about to wait re-checks the deque. An exception (the
        # reader's end) wakes the loop at once.
        if self._waiting and (len(self._items) >= self._wake_at or isinstance(item, BaseException)):
            self._loop.call_soon_threadsafe(self._ready.set)

    async def get_all(self, timeout: float) -> list[T | BaseException]:
        """Everything queued; waits up to ``timeout`` seconds for the first item."""
        if not self._items:
            self._ready.clear()
            self._waiting = True
            deadline = self._loop.time() + timeout
            try:
                while not self._items and (left := deadline - self._loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ready.wait(), min(left, self._poll_s))
            finally:
                self._waiting = False
        out: list[T | BaseException] = []
        while self._items:
            out.append(self._items.popleft())
            self._room.release()
        return out

    def close(self) -> None:
        """Unblocks a producer waiting for room (the consumer has stopped)."""
        self._closed.set()


class ItemBudget:
    """How many items the reader thread may have handed over and the job not yet taken: the
    bound on a streaming job's memory. One transaction (part) larger than the budget still
    passes when nothing else is queued."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            while self._used and self._used + n > self._limit and not self._closed:
                self._cond.wait()
            self._used += n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
