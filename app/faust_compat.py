"""Fixes to faust-streaming 0.15.3 that exactly-once failover needs, applied at app start.

Under ``processing_guarantee="exactly_once"`` Faust takes changelog highwaters from aiokafka's
``last_stable_offset(tp)``, which stays ``None`` until the partition has been fetched once. Faust
maps that to -1, so a worker taking over a partition skips table recovery, or crashes with
"persisted offset ... is higher than ... highwater (N > -1)". The broker knows the last stable
offset: a ListOffsets request from a read_committed consumer (``end_offsets``) returns it. So ask
the broker, and fall back to the fetched highwater where only a synchronous answer will do.
The embedded broker's answer to a read_committed ListOffsets is wrong while a transaction is
open on the partition (-1 or 0, not the transaction's first offset; seen as a survivor's crash:
"persisted offset 8 > highwater -1"). So there the log end offset, asked by a read_uncommitted
consumer, stands in: recovery then reads until the open transaction ends (the embedded broker
shows aborted records anyway). Either way the highwater is then moved back to one past the last
record: a transactional log ends in a commit marker that no consumer receives, and Faust's
recovery, waiting for the offset before the highwater, otherwise gives up only after two
5-second timeouts, on every rebalance.

Faust also commits through per-partition transactional producers that may not be in a
transaction: ``begin_transaction`` failures are only logged (PITFALLS.md §1.6; every rebalance logs
"IN_TRANSACTION -> IN_TRANSACTION"). ``send_offsets_to_transaction`` then raises
``IllegalOperation("Not in the middle of a transaction")``; on shutdown that aborts the consumer's
stop, its thread keeps running after the event loop closed, and the worker never exits. So a
producer found outside a transaction begins one before the offsets are sent, and one whose
transaction failed makes the worker crash as Faust does for a fenced producer (seen once under
heavy load: a sender error left a producer in FATAL_ERROR); restarting from committed offsets is
what keeps the output complete on a broker that hides aborted transactions.

Faust keeps the transactional producer of a partition that a rebalance leaves with the same
worker. But a worker that misses a generation (slow to rejoin under load) keeps partitions that
another worker owned in between, and that worker's producer, same transactional id, fenced ours.
The kept producer then fails on its next AddPartitionsToTxn and the worker crashes (seen in CI:
the embedded broker answers PRODUCER_FENCED, which aiokafka reads as UnknownError). So every
assignment starts fresh producers: one InitProducerId per transactional id per rebalance, while
the stream is paused and the last transaction was committed at revocation.

Faust picks the transactional producer of a send by the *destination* partition's topic group
(PITFALLS.md §1.1), so a record an agent forwards and the offset of the record it came from can
be committed in different transactions: the CDC agent's forward to the delivery topic was lost
when a worker died after its source offset was committed (seen in CI: a committed CDC record
never reached the delivery topic and was never read again). A send made while an agent
processes an event now goes through the producer of that event's partition, so the forward and
the source offset commit in one transaction.

Faust's committed offsets fell ever further behind on transactional topics (every CDC and
delivery topic): each transaction ends in a commit marker, an offset no consumer receives, so
Faust records a "gap" per marker, and its gap intervals also cover the offset of the message read
(off by one). Filled into the list of acknowledged offsets, that offset is there twice, and
Faust's search for the first run of consecutive offsets stops at the duplicate: each commit moved
a CDC partition 2 offsets on while the job wrote ~10 a second (robinhood/faust#625, #559;
faust-streaming#606). Every rebalance then re-read everything since the committed offset: after a
failover the CDC agent forwarded ~400 old messages again, the sink re-applied ~24,000 changes, and
the first new change waited behind them. ``_new_offset`` now takes the acknowledged offsets and
gaps as a set: the same rule (first consecutive run, nothing past a hole), without duplicates.

Two Faust races were hidden by that 10-second recovery wait and came out once it was gone (e2e
failover and job distribution tests, 3 failures in 8 runs; 0 in 6 since):

- Faust hands aiokafka its *live* set of active partitions for a fetch. When recovery pauses
  the changelog partitions the set is empty for a moment, and aiokafka, given an empty set,
  returns the prefetched records of every partition; Faust drops those of partitions not active
  yet, after aiokafka has moved past them. A freshly assigned CDC partition's records were
  never delivered. The fetch now gets a copy, and none when it is empty (``_getmany``).
- At revocation Faust commits and ends the transactions, then flushes its buffer of table
  changelog writes, whose sends then fail outside a transaction and crash the worker; its flush
  also ignores the message being sent. The buffer is now flushed, in-flight message included,
  before that last commit (``_commit_and_end_transactions``, ``_buffer_flush``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Mapping, Set
from typing import Any, cast

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState
from faust.streams import current_event
from faust.transport.consumer import Consumer, TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from app.kafka_compat import is_tansu_compat_enabled

log = logging.getLogger(__name__)

_applied = False


async def _highwaters(self: AIOKafkaConsumerThread, partitions: list[TP]) -> Mapping[TP, int]:
    consumer = self._ensure_consumer()
    bootstrap = consumer._client._bootstrap_servers
    if is_tansu_compat_enabled():
        ends = await log_end_offsets(bootstrap, partitions)
        isolation = "read_uncommitted"
    else:
        # read_committed consumers get the last stable offset here, read_uncommitted the log end.
        ends = dict(await consumer.end_offsets(partitions))
        isolation = "read_committed"
    return await after_last_records(bootstrap, ends, isolation)


async def log_end_offsets(bootstrap: Any, partitions: list[TP]) -> dict[TP, int]:
    """End offsets as a read_uncommitted consumer sees them (open transactions included)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await probe.start()
    try:
        return cast(dict[TP, int], await probe.end_offsets(partitions))
    finally:
        await probe.stop()


async def after_last_records(
    bootstrap: Any, ends: Mapping[TP, int], isolation: str, tail: int = 64, wait_s: float = 3.0
) -> dict[TP, int]:
    """For each partition, one past its last record before ``ends``: a transactional log ends
    in a commit marker, which no consumer ever receives, and Faust's recovery waits for the
    offset before the end; with the marker there it waits two 5-second timeouts instead (every
    rebalance). Read the last ``tail`` offsets to find the record; where none is found in time,
    the end stays as it is."""
    out = dict(ends)
    todo = {tp: end for tp, end in ends.items() if end is not None and end > 0}
    if not todo:
        return out
    probe = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation
    )
    await probe.start()
    try:
        probe.assign(list(todo))
        for tp, end in todo.items():
            probe.seek(tp, max(0, end - tail))
        last: dict[TP, int] = {}
        deadline = asyncio.get_running_loop().time() + wait_s
        while todo and asyncio.get_running_loop().time() < deadline:
            batches = await probe.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < todo.get(tp, -1):
                        last[tp] = record.offset
            for tp in list(todo):
                if await probe.position(tp) >= todo[tp]:
                    if tp in last:
                        out[tp] = last[tp] + 1
                    del todo[tp]
    finally:
        await probe.stop()
    return out


def _highwater(self: AIOKafkaConsumerThread, tp: TP) -> int:
    consumer = self._ensure_consumer()
    if not consumer._subscription.is_assigned(tp):
        # Revoked while Faust drained its records (it only feeds its monitor with the value);
        # aiokafka would fail an assertion and crash the fetcher.
        return -1
    if self.consumer.in_transaction:
        lso = consumer.last_stable_offset(tp)
        if lso is not None:
            return cast(int, lso)
    return cast(int, consumer.highwater(tp))


_faust_getmany = AIOKafkaConsumerThread.getmany


async def _getmany(self: Any, active_partitions: Set[TP] | None, timeout: float) -> Any:
    """Fetch only the partitions active *now*. Faust hands aiokafka its live set of active
    partitions, which it keeps changing while the fetch waits in the consumer thread; once that
    set is empty aiokafka returns the buffered records of *every* partition, and Faust drops
    those of partitions that are not active, after aiokafka has moved past them. Records of a
    stream partition prefetched during table recovery were lost that way (e2e failover test:
    a freshly assigned CDC partition was never delivered)."""
    if active_partitions is None:
        return await _faust_getmany(self, active_partitions, timeout)
    frozen = set(active_partitions)
    if not frozen:
        return {}
    return await _faust_getmany(self, frozen, timeout)


async def _buffer_send_pending(self: Any, fut: Any) -> None:
    self._sluice_in_flight = getattr(self, "_sluice_in_flight", 0) + 1
    try:
        await fut.message.channel.publish_message(fut, wait=False)
    finally:
        self._sluice_in_flight -= 1


async def _buffer_flush(self: Any, deadline_s: float = 30.0) -> None:
    """Until nothing is queued *or being sent*. Faust's flush does not count the message its
    sender task has already taken from the queue, and gives up after 0.1 s without a send; at
    revocation the transactions were then committed (no new one begun) while that message was
    still on its way, and its send crashed the worker ("Can't send messages while not in
    transaction"; e2e job distribution test)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while self.size or getattr(self, "_sluice_in_flight", 0):
        if self.state != "running" and self.size:
            raise RuntimeError("Cannot flush: Producer not Running")
        if loop.time() > until:
            log.warning("producer buffer not flushed in %.0f s; going on", deadline_s)
            return
        self.message_sent.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


_faust_commit_and_end = Consumer.commit_and_end_transactions


async def _commit_and_end_transactions(self: Any) -> None:
    """Flush the producer buffer before the last commit of the transactions. At revocation Faust
    waits for the streams, commits and ends the transactions, and only then flushes its buffer
    of table changelog writes: those of the last events then missed their transaction, and
    their send crashed the worker ("Can't send messages while not in transaction")."""
    producer = self.app._producer
    if producer is not None:
        await producer.buffer.flush()
    await _faust_commit_and_end(self)


async def _commit_transactions(
    self: Any,
    tid_to_offset_map: Mapping[str, Mapping[TP, int]],
    group_id: str,
    start_new_transaction: bool = True,
) -> None:
    for transactional_id, offsets in tid_to_offset_map.items():
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            if producer is None:
                continue  # revoked in the meantime: its offsets belong to the new owner
            txn = producer._txn_manager
            if txn.is_fatal_error():
                # The producer's sender died (fenced, or an error the broker gave no name):
                # its open transaction is lost. Crash as Faust does when fenced, so the worker
                # restarts from committed offsets instead of going on without that output.
                raise ProducerFenced(f"transactional producer {transactional_id} failed")
            if txn.state == TransactionState.ABORTABLE_ERROR:
                raise ProducerFenced(f"transaction of {transactional_id} must be aborted")
            if not txn.is_in_transaction():
                await producer.begin_transaction()
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()


async def _on_rebalance(
    self: Any, assigned: Set[TP], revoked: Set[TP], newly_assigned: Set[TP]
) -> None:
    producer = self.producer
    kept = sorted(producer._transaction_producers)
    for transactional_id in kept:
        try:
            await producer.stop_transaction(transactional_id)
        except Exception as exc:  # a fenced producer may fail to stop: it is dropped anyway
            log.warning("stopping transactional producer %s: %r", transactional_id, exc)
    assigned_ids = sorted(self._tps_to_transactional_ids(assigned))
    if assigned_ids:
        self.log.info("Starting %d fresh transactional producers", len(assigned_ids))
    for transactional_id in assigned_ids:
        await producer.maybe_begin_transaction(transactional_id)


async def _send(
    self: Any,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int | None,
    timestamp: float | None,
    headers: Any,
    *,
    transactional_id: str | None = None,
) -> Any:
    p = self.consumer.key_partition(topic, key, partition)
    event = current_event()
    if event is not None and not self.app.assignor.is_standby(event.message.tp):
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        transactional_id = f"{self.app.conf.id}-{group}-{source.partition}"
    elif p is not None:
        group = self.app.assignor.group_for_topic(topic)
        transactional_id = f"{self.app.conf.id}-{group}-{p}"
    else:
        transactional_id = None
    return await self.producer.send(
        topic, key, value, p, timestamp, headers, transactional_id=transactional_id
    )


def _new_offset(self: Any, tp: TP) -> int | None:
    """The offset to commit for ``tp``: one past the first run of consecutive offsets that are
    acknowledged or known gaps (markers), or None. Faust's own version stops at a duplicate, and
    its gaps duplicate the offset of the message that revealed them (see above)."""
    acked = self._acked[tp]
    if not acked:
        return None
    done = set(acked)
    top = max(done)
    gaps = self._gap.get(tp)
    if gaps and gaps.overlaps(0, top):
        # Gaps up to the newest acknowledged offset only; the rest stays for later.
        for iv in gaps.overlap(0, top):
            done.update(range(iv.begin, min(iv.end, top + 1)))
        gaps.chop(0, top + 1)
    ordered = sorted(done)
    committed = self._committed_offset[tp]
    index = self._acked_index[tp]
    if committed is not None:
        stale = bisect.bisect_left(ordered, committed)  # already committed
        index.difference_update(ordered[:stale])
        ordered = ordered[stale:]
        # A hole right after the committed offset (more than the one marker Faust allows for):
        # a message before the acknowledged ones is still being processed.
        if not ordered or ordered[0] - committed > 1:
            acked[:] = ordered
            return None
    end = 0
    while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
        end += 1
    index.difference_update(ordered[: end + 1])
    acked[:] = ordered[end + 1 :]
    return ordered[end] + 1


_fetch_max_wait_ms: int | None = None
_faust_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    """Faust's worker consumer, with ``fetch_max_wait_ms`` set (Faust fixes it at 1500 ms)."""
    consumer = _faust_create_worker_consumer(self, transport)
    if _fetch_max_wait_ms is not None:
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # read when the consumer starts
    return consumer


def apply_faust_fixes(fetch_max_wait_ms: int | None = None) -> None:
    """Idempotent; patches the aiokafka consumer thread class of faust. ``fetch_max_wait_ms``
    replaces Faust's fixed 1500 ms fetch wait of the worker's consumer
    (SLUICE_FETCH_MAX_WAIT_MS)."""
    global _applied, _fetch_max_wait_ms
    _fetch_max_wait_ms = fetch_max_wait_ms
    if _applied:
        return
    cls: Any = AIOKafkaConsumerThread
    cls._highwaters = _highwaters
    cls.highwater = _highwater
    cls.getmany = _getmany
    cls._create_worker_consumer = _create_worker_consumer
    buffer_cls: Any = ProducerBuffer
    buffer_cls._send_pending = _buffer_send_pending
    buffer_cls.flush = _buffer_flush
    consumer_cls: Any = Consumer
    consumer_cls.commit_and_end_transactions = _commit_and_end_transactions
    consumer_cls._new_offset = _new_offset
    producer_cls: Any = Producer
    producer_cls.commit_transactions = _commit_transactions
    manager_cls: Any = TransactionManager
    manager_cls.on_rebalance = _on_rebalance
    manager_cls.send = _send
    _applied = True
