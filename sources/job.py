"""A source job: snapshot, then stream the binlog of one source into CDC topics, forever.

It owns a transactional producer whose id is derived from the job name, so if two workers ever
run the same job (during a rebalance), the newer one fences the older one's commits. Progress is
read back from the positions topic on every (re)start; nothing is kept in the worker.

Shapes: snapshot rows are described by information_schema (read with the snapshot); every binlog
row by its own table map (sources/table_map.py), refined by the schema history
(sources/schema_history.py), so a lagging reader never describes an old row with a later shape.
A DDL statement on a captured table becomes schema-change (op "s") or truncate (op "t") records in
every partition of the table's topic (sources/schema_changes.py); a renamed table's rows are read
again under its new name by a one-table snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from app.errors import PositionPurged, TerminalError
from app.pipeline import BinlogSource
from app.records import encode, encode_key
from app.settings import Settings
from app.topics import TopicSpec, cdc_topic, ensure_topics, heartbeat_topic, positions_topic
from sources.binlog import (
    BinlogReader,
    RowChange,
    SourceTransaction,
    Statement,
    connection_settings,
)
from sources.ddl import TableChange, dropped_database, parse_ddl
from sources.handoff import Handoff, ItemBudget
from sources.mysql import (
    SourceAddress,
    check_position_available,
    current_position,
    preflight,
)
from sources.position import BinlogPosition
from sources.progress import JobProgress, read_progress
from sources.reader_process import ReaderProcess
from sources.resnapshot import ResnapshotRequest
from sources.schema import TableSchema, load_schema, load_schemas
from sources.schema_changes import PendingChange, control_event, partition_keys
from sources.schema_history import SchemaHistory, refine
from sources.snapshot import ConsistentSnapshot, SnapshotChunk, open_snapshot
from sources.values import row_normaliser
from sources.writer import ChangeWriter

logger = logging.getLogger(__name__)


@dataclass
class JobStatus:
    """What the status view shows of a job; written only by the job itself."""

    name: str
    phase: str = "starting"
    position: str | None = None
    events: int = 0
    transactions: int = 0
    snapshot_rows: int = 0
    snapshot_chunks: int = 0
    snapshot_resumed_after: Any = None
    snapshot_method: str | None = None  # consistent | watermark
    snapshot_reconciled: int = 0  # binlog changes applied to watermark chunks
    last_commit_at: float | None = None
    error: str | None = None
    restarts: int = 0
    resnapshots: int = 0
    last_heartbeat_at: float | None = None
    schema_changes: int = 0  # op "s"/"t" records published (each to every partition)
    # Re-snapshots on demand (sources/resnapshot.py): the last one asked for and its progress.
    on_demand: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _TableOut:
    schema: TableSchema
    topic: str
    partitions: int
    head: bytes
    key_columns: tuple[str, ...]
    normalise: Any = field(repr=False)
    # The table-map schema and history version ``schema`` was refined from (a cache key).
    raw: TableSchema | None = field(default=None, repr=False)
    history_version: int = -1

    def reshape(self, schema: TableSchema) -> None:
        self.schema = schema
        self.head = ChangeWriter.batch_head(schema.database, schema.table, schema.to_json())
        self.key_columns = schema.key_columns
        self.normalise = row_normaliser(schema.columns)


class SourceJob:
    def __init__(self, source: BinlogSource, settings: Settings) -> None:
        self.source = source
        self.settings = settings
        self.status = JobStatus(source.name)
        self._address = SourceAddress.from_url(source.url.get_secret_value())
        self._tables: dict[tuple[str, str], _TableOut] = {}
        self._schemas: dict[tuple[str, str], TableSchema] = {}
        self._history = SchemaHistory()
        self._pending: dict[tuple[str, str], list[PendingChange]] = {}
        self._topics: set[str] = set()
        self._requests: asyncio.Queue[ResnapshotRequest] = asyncio.Queue()
        self.on_topic_created: Callable[[str], None] = lambda _topic: None

    def request_resnapshot(self, request: ResnapshotRequest) -> None:
        """Read ``request``'s rows again between two binlog transactions (while streaming)."""
        self.status.on_demand = {"table": request.name, "from": request.key_from,
                                 "to": request.key_to, "state": "queued", "rows": 0}  # fmt: skip
        self._requests.put_nowait(request)

    @property
    def transactional_id(self) -> str:
        return f"{self.settings.app_id}.source.{self.source.name}"

    async def run(self) -> None:
        """Run until cancelled; restart after failures with backoff."""
        delay = 1.0
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                self.status.phase = "stopped"
                raise
            except TerminalError as exc:
                self.status.phase, self.status.error = "failed", str(exc)
                logger.error("source job %s stopped: %s", self.source.name, exc)
                delay = 30.0
            except Exception as exc:
                self.status.phase, self.status.error = "retrying", f"{type(exc).__name__}: {exc}"
                logger.exception("source job %s failed; restarting", self.source.name)
            self.status.restarts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _run_once(self) -> None:
        self._tables.clear()
        self._pending.clear()
        self._topics.clear()
        # Start the transactional producer first: its InitProducerId fences a stale owner of
        # this job and aborts that owner's open transaction, which would otherwise hold the
        # positions topic's last stable offset back and hide the latest committed progress.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_request_size=4 * 1024 * 1024,
            max_batch_size=1024 * 1024,
        )
        await producer.start()
        try:
            start, snapshot_state = await self._resume_point()
            writer = ChangeWriter(producer, self.source.name, positions_topic(self.settings.app_id))
            if start is None:
                start = await self._snapshot(writer, snapshot_state)
            await self._stream(writer, start)
        finally:
            await producer.stop()

    async def _resume_point(self) -> tuple[BinlogPosition | None, dict[str, Any]]:
        """Where to stream from (None: snapshot first) and the snapshot progress to go on with."""
        conn = await asyncio.to_thread(self._address.connect)
        try:
            await asyncio.to_thread(preflight, conn)
            self._schemas = await asyncio.to_thread(load_schemas, conn, self.source.tables)
            self._history = SchemaHistory()
            self._history.seed(self._schemas)
            progress = await read_progress(
                self.settings.bootstrap_servers,
                positions_topic(self.settings.app_id),
                self.source.name,
            )
            try:
                if progress is not None and progress.phase == "streaming" and progress.position:
                    await asyncio.to_thread(check_position_available, conn, progress.position)
                    return progress.position, {}
                if self.source.snapshot == "never":
                    return await asyncio.to_thread(current_position, conn), {}
                if progress is not None and progress.phase == "snapshot":
                    state = dict(progress.snapshot)
                    first = BinlogPosition.from_json(state["start"])
                    # Streaming will start at the first snapshot's position: it must still exist.
                    await asyncio.to_thread(check_position_available, conn, first)
                    return None, state
                return None, {}
            except PositionPurged as exc:
                if self.source.on_purged != "resnapshot":
                    raise
                logger.warning("source job %s: %s; taking a new snapshot", self.source.name, exc)
                self.status.resnapshots += 1
                return None, {}
        finally:
            conn.close()

    async def _table(self, database: str, table: str) -> _TableOut | None:
        """The output of a table as information_schema describes it now (the snapshot's view)."""
        out = self._tables.get((database, table))
        if out is not None:
            return out
        schema = self._schemas.get((database, table))
        if schema is None:
            return None
        return await self._open(schema)

    async def _ensure_topic(self, topic: str) -> None:
        await self._ensure_topics([topic])

    async def _ensure_topics(self, topics: list[str]) -> None:
        new = sorted(set(topics) - self._topics)
        if not new:
            return
        specs = [TopicSpec(t, self.settings.topic_partitions) for t in new]
        await ensure_topics(self.settings.bootstrap_servers, specs)
        self._topics.update(new)
        for topic in new:
            # Reported to agents/discovery.py (which leaves it to the next listing).
            self.on_topic_created(topic)

    async def _open(self, schema: TableSchema) -> _TableOut:
        """Start writing a table (its topic exists afterwards), or give it a new shape."""
        key = (schema.database, schema.table)
        out = self._tables.get(key)
        if out is not None:
            if out.schema != schema:
                out.reshape(schema)
            return out
        topic = cdc_topic(self.source.topic_prefix, schema.database, schema.table)
        await self._ensure_topic(topic)
        out = _TableOut(
            schema,
            topic,
            self.settings.topic_partitions,
            ChangeWriter.batch_head(schema.database, schema.table, schema.to_json()),
            schema.key_columns,
            row_normaliser(schema.columns),
        )
        self._tables[key] = out
        return out

    async def _describe_now(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """information_schema's account of some tables, now (None for those that do not exist)."""
        if not keys:
            return {}

        def read() -> dict[tuple[str, str], TableSchema | None]:
            conn = self._address.connect()
            try:
                return {k: load_schema(conn, *k) for k in keys}
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    async def _row_table(self, change: RowChange, pos_key: str) -> _TableOut | None:
        """The output for a binlog row, shaped by the row's own table map."""
        key = (change.database, change.table)
        out = self._tables.get(key)
        raw = change.schema
        version = self._history.version
        if out is not None and raw is not None and (out.raw, out.history_version) == (raw, version):
            return out
        known = self._history.at(change.database, change.table, pos_key)
        if raw is not None:
            schema = refine(raw, known)
        elif known is not None:
            schema = known  # no row metadata in this event: the history's word is all there is
        else:
            found = (await self._describe_now([key]))[key]
            if found is None:
                return None
            schema = found
        out = await self._open(schema)
        out.raw, out.history_version = raw, version
        return out

    async def _commit(self, writer: ChangeWriter, progress: JobProgress) -> None:
        sent = await writer.commit(progress)
        self.status.events += sent
        self.status.transactions += 1
        self.status.last_commit_at = time.time()
        if progress.position is not None:
            self.status.position = str(progress.position)

    async def _snapshot(self, writer: ChangeWriter, state: dict[str, Any]) -> BinlogPosition:
        """Read every table in key-ordered chunks; one Kafka transaction per chunk.

        ``state`` is the committed snapshot progress (empty for a new snapshot): where streaming
        will start, the tables done, the table and key after which to go on, and the position
        of the last chunk. Each chunk's rows carry the position they were read at: the read
        view's (consistent method) or the chunk's high watermark (watermark method). Streaming
        starts at the first chunk's position, which is at or before every chunk's
        (docs/ARCHITECTURE.md, "Handoff").
        """
        self.status.phase = "snapshot"
        snap = await asyncio.to_thread(
            open_snapshot, self._address, self.source.snapshot_method, self.source.server_id
        )
        self.status.snapshot_method = snap.method
        try:
            if state:
                self.status.snapshot_resumed_after = state.get("after")
                logger.info(
                    "source job %s: %s snapshot resumes at %s after %s (chunk %d), at %s",
                    self.source.name, snap.method, state.get("table"), state.get("after"),
                    state.get("chunks", 0), snap.position,
                )  # fmt: skip
            else:
                # The consistent method knows where streaming starts before reading a row; the
                # watermark method learns it from its first chunk.
                first = snap.position.to_json() if snap.method == "consistent" else None
                state = {"start": first, "method": snap.method, "done": [], "table": None,
                         "after": None, "chunks": 0, "rows": 0, "high": None}  # fmt: skip
                logger.info("source job %s: %s snapshot at %s", self.source.name, snap.method,
                            snap.position)  # fmt: skip
            ts_ms = int(time.time() * 1000)
            done = {tuple(t) for t in state["done"]}
            # Every table's topic at once: the CDC agents subscribe to them in one rebalance,
            # not in one per table as the snapshot reaches it.
            await self._ensure_topics(
                [cdc_topic(self.source.topic_prefix, *key) for key in self._schemas]
            )
            for key in sorted(self._schemas):
                if key in done:
                    continue
                out = await self._table(*key)
                if out is None:
                    continue
                after = state["after"] if state["table"] == list(key) else None
                chunks = snap.read(out.schema, self.settings.snapshot_chunk_rows, after,
                                   out.normalise)  # fmt: skip
                while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                    self._add_chunk(writer, out, chunk, ts_ms, state)
                    state["table"], state["after"] = list(key), chunk.after
                    if chunk.last:  # done with its last chunk: a resume skips the table
                        state["done"].append(list(key))
                    # A chunk is committed with the key it ends at (no key: redo the table).
                    await self._commit(writer, JobProgress("snapshot", None, state))
                if list(key) not in state["done"]:
                    state["done"].append(list(key))
                    state["table"], state["after"] = None, None
            if state["start"] is None:  # no chunk at all: hand off where the snapshot began
                state["start"] = snap.position.to_json()
            start = BinlogPosition.from_json(state["start"])
            await self._commit(writer, JobProgress("streaming", start, {"snapshot": state}))
            logger.info(
                "source job %s: snapshot done, %d rows in %d chunks, %d binlog changes reconciled",
                self.source.name, state["rows"], state["chunks"], self.status.snapshot_reconciled,
            )  # fmt: skip
            return start
        finally:
            await asyncio.to_thread(snap.close)

    def _add_chunk(
        self,
        writer: ChangeWriter,
        out: _TableOut,
        chunk: SnapshotChunk,
        ts_ms: int,
        state: dict[str, Any],
    ) -> None:
        """A chunk's rows as op "r" at the chunk's position, and the progress that records it."""
        source = self._source_block(chunk.position, ts_ms, snapshot=True)
        pos_key = chunk.position.key()
        for row in chunk.rows:
            self._add(writer, out, "r", None, row, pos_key, source)
        if state["start"] is None:
            state["start"] = chunk.position.to_json()
        state["high"] = chunk.position.to_json()
        state["chunks"] += 1
        state["rows"] += len(chunk.rows)
        self.status.snapshot_rows = state["rows"]
        self.status.snapshot_chunks = state["chunks"]
        self.status.snapshot_reconciled += chunk.reconciled

    def _source_block(
        self, pos: BinlogPosition, ts_ms: int, snapshot: bool, gtid: str | None = None
    ) -> dict[str, Any]:
        return {
            "server_id": self.source.server_id,
            "file": pos.file,
            "pos": pos.pos,
            "row": pos.row,
            "gtid": gtid,
            "ts_ms": ts_ms,
            "snapshot": snapshot,
        }

    def _add(
        self,
        writer: ChangeWriter,
        out: _TableOut,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        pos_key: str,
        source: dict[str, Any],
    ) -> None:
        image = after if after is not None else before
        assert image is not None
        key_values = [image.get(c) for c in out.key_columns]
        event = {
            "op": op,
            "key": dict(zip(out.key_columns, key_values, strict=True)),
            "before": before,
            "after": after,
            "pos": pos_key,
            "source": source,
        }
        writer.add(out.topic, out.partitions, encode_key(key_values), event, out.head)

    async def _stream(self, writer: ChangeWriter, start: BinlogPosition) -> None:
        """Stream from ``start`` (a transaction boundary, or inside a split transaction: its
        first event with ``row`` = the items committed, see sources/txn_parts.py)."""
        self.status.phase = "streaming"
        self.status.position = str(start)
        loop = asyncio.get_running_loop()
        handoff: Handoff[SourceTransaction] = Handoff(loop)
        # Bounded in items too, not only transactions: parts of a large transaction are large.
        budget = ItemBudget(max(2 * self.settings.source_max_txn_rows, 10_000))

        def emit(txn: SourceTransaction) -> None:
            budget.acquire(len(txn.changes))
            handoff.put(txn)

        reader_type = ReaderProcess if self.settings.source_reader_process else BinlogReader
        reader = reader_type(
            connection_settings(
                self._address.host, self._address.port, self._address.user, self._address.password
            ),
            self.source.server_id,
            start,
            self.source.tables.matches,
            self.settings.source_max_txn_rows,
        )

        def run_reader() -> None:
            try:
                reader.run(emit)
            except BaseException as exc:  # handed to the event loop, which re-raises it
                handoff.put(exc)

        thread = loop.run_in_executor(None, run_reader)
        last: BinlogPosition = start  # what a commit now would have covered: the resume point
        deadline = loop.time() + self.settings.source_flush_interval_s
        heartbeat_at = loop.time()
        received: deque[SourceTransaction | BaseException] = deque()
        try:
            while True:
                if not received:
                    received.extend(await handoff.get_all(max(0.0, deadline - loop.time())))
                item = received.popleft() if received else None
                if isinstance(item, BaseException):
                    raise item
                part = False
                if item is not None:
                    budget.release(len(item.changes))
                    await self._add_transaction(writer, item, last)
                    last = item.resume_point()
                    # A part of a split transaction is committed at once: each Kafka
                    # transaction stays small and short, and a crash repeats at most one part.
                    part = not item.complete
                if not self._requests.empty():
                    await self._serve_requests(writer, last)
                due = loop.time() >= deadline
                full = part or writer.pending_events >= self.settings.source_flush_events
                if due or full:
                    # Progress may not pass a schema change whose record is still unpublished.
                    await self._publish_pending(writer)
                if (due or full) and (str(last) != self.status.position or writer.pending_events):
                    await self._commit(writer, JobProgress("streaming", last, {}))
                    self._history.forget_before(last.key())
                elif due and loop.time() - heartbeat_at >= self.settings.heartbeat_s:
                    await self._heartbeat(writer, last)
                    heartbeat_at = loop.time()
                if due or full:
                    deadline = loop.time() + self.settings.source_flush_interval_s
        finally:
            reader.stop()
            handoff.close()
            budget.close()  # a reader waiting for room must see the stop flag
            # The reader wakes on the next heartbeat (1 s) and sees the stop flag.
            await asyncio.wait([thread], timeout=5)

    async def _heartbeat(self, writer: ChangeWriter, last: BinlogPosition) -> None:
        """An idle source still commits: progress plus a record on the heartbeat topic."""
        now_ms = int(time.time() * 1000)
        beat = encode(
            {"heartbeat": True, "job": self.source.name, "position": str(last), "ts_ms": now_ms}
        )
        await writer.commit(
            JobProgress("streaming", last, {"heartbeat_ts_ms": now_ms}),
            (heartbeat_topic(self.source.topic_prefix), beat),
        )
        self.status.last_heartbeat_at = now_ms / 1000

    # ------------------------------------------------------------------ schema changes
    # What is published for which statement, and when: sources/schema_changes.py.

    def _known(self, key: tuple[str, str], pos_key: str | None = None) -> TableSchema:
        """The table's shape as the job last knew it (empty if it never knew it)."""
        out = self._tables.get(key)
        if out is not None:
            return out.schema
        known = self._history.at(*key, pos_key) if pos_key is not None else None
        known = known or self._history.latest(*key)
        return known if known is not None else TableSchema(key[0], key[1], (), ())

    async def _publish(
        self, writer: ChangeWriter, schema: TableSchema, event: dict[str, Any]
    ) -> None:
        """One control event in every partition of the table's topic."""
        topic = cdc_topic(self.source.topic_prefix, schema.database, schema.table)
        await self._ensure_topic(topic)
        head = ChangeWriter.batch_head(schema.database, schema.table, schema.to_json())
        partitions = self.settings.topic_partitions
        for key in partition_keys(partitions):
            writer.add(topic, partitions, key, event, head)
        self.status.schema_changes += 1

    async def _publish_pending(
        self,
        writer: ChangeWriter,
        only: tuple[str, str] | None = None,
        schema: TableSchema | None = None,
    ) -> None:
        """Publish waiting op "s" records: of one table with ``schema`` (its first new row's),
        or of every table with the shape information_schema shows now."""
        keys = [only] if only is not None else list(self._pending)
        if not keys:
            return
        now = {} if schema is not None else await self._describe_now(keys)
        for key in keys:
            shape = schema or now.get(key) or self._known(key)
            for change in self._pending.pop(key, []):
                if not change.always and not change.extra and shape == change.before:
                    continue  # an index, a comment, an engine: nothing a consumer sees
                event = control_event("s", change.pos_key, change.source, change.ddl)
                event.update(change.extra)
                await self._publish(writer, shape, event)

    async def _on_statement(
        self,
        writer: ChangeWriter,
        stmt: Statement,
        pos: BinlogPosition,
        ts_ms: int,
        last: BinlogPosition,
    ) -> None:
        changes = parse_ddl(stmt.sql, stmt.database)
        gone_db = dropped_database(stmt.sql)
        if gone_db is not None:
            gone = set(self._history.tables(gone_db)) | {k for k in self._tables if k[0] == gone_db}
            changes = [TableChange("drop", *k) for k in sorted(gone)]
        wants = self.source.tables.matches
        relevant = [
            c
            for c in changes
            if wants(c.database, c.table)
            or (c.new_database is not None and wants(c.new_database, c.new_table or ""))
        ]
        if not relevant:
            return
        logger.info("source job %s: %s at %s", self.source.name, stmt.sql[:200], pos)
        # Rows before the statement keep their shape: commit them, and what came before, first.
        await self._publish_pending(writer)
        if writer.pending_events:
            await self._commit(writer, JobProgress("streaming", last, {}))
        pos_key = pos.key()
        source = self._source_block(pos, ts_ms, snapshot=False)
        shaped: list[tuple[str, str]] = []
        for c in relevant:
            if c.kind in ("create", "alter"):
                shaped.append((c.database, c.table))
            elif c.kind == "rename" and c.new_database and c.new_table:
                shaped.append((c.new_database, c.new_table))
        described = await self._describe_now(shaped)
        for c in relevant:
            key = (c.database, c.table)
            if c.kind == "truncate":
                await self._publish(
                    writer, self._known(key, pos_key), control_event("t", pos_key, source, stmt.sql)
                )
            elif c.kind == "drop":
                await self._publish_pending(writer, key, self._known(key, pos_key))
                event = control_event("s", pos_key, source, stmt.sql, dropped=True)
                await self._publish(writer, self._known(key, pos_key), event)
                self._forget(key, pos_key)
            elif c.kind == "rename":
                await self._on_rename(writer, c, pos_key, source, stmt.sql, described, last)
            else:  # create, alter: the new shape comes with the next row (or the next commit)
                before = None if c.kind == "create" else self._known(key, pos_key)
                now = described.get(key)
                if now is not None:
                    self._history.record(*key, pos_key, now)
                extra: dict[str, Any] = {}
                if c.renamed_columns:
                    extra["renamed_columns"] = dict(c.renamed_columns)
                pending = PendingChange(
                    pos_key, source, stmt.sql, extra, always=c.kind == "create", before=before
                )
                self._pending.setdefault(key, []).append(pending)

    def _forget(self, key: tuple[str, str], pos_key: str) -> None:
        """Stop tracking a dropped (or renamed-away) table."""
        self._tables.pop(key, None)
        self._pending.pop(key, None)
        self._history.record(*key, pos_key, None)

    async def _on_rename(
        self,
        writer: ChangeWriter,
        c: TableChange,
        pos_key: str,
        source: dict[str, Any],
        ddl: str,
        described: dict[tuple[str, str], TableSchema | None],
        last: BinlogPosition,
    ) -> None:
        """The old name's topic ends with a drop; the new name's topic starts with the table's
        shape and its rows, read by a snapshot (they were never written under the new name)."""
        old = (c.database, c.table)
        new = (c.new_database or c.database, c.new_table or c.table)
        wants = self.source.tables.matches
        old_schema = self._known(old, pos_key)
        if wants(*old):
            await self._publish_pending(writer, old, old_schema)
            event = control_event("s", pos_key, source, ddl, dropped=True, renamed_to=".".join(new))
            await self._publish(writer, old_schema, event)
            self._forget(old, pos_key)
        if not wants(*new):
            return
        now = described.get(new)
        schema = now or TableSchema(*new, old_schema.columns, old_schema.primary_key)
        self._history.record(*new, pos_key, schema)
        event = control_event("s", pos_key, source, ddl, renamed_from=".".join(old))
        await self._publish(writer, schema, event)
        if now is not None:
            await self._snapshot_table(writer, now, last)

    async def _serve_requests(self, writer: ChangeWriter, last: BinlogPosition) -> None:
        """Re-snapshots asked for on demand, between two transactions of the stream."""
        await self._publish_pending(writer)  # progress may not pass an unpublished change
        while not self._requests.empty():
            request = self._requests.get_nowait()
            key = (request.database, request.table)
            schema = (await self._describe_now([key]))[key]
            status = self.status.on_demand or {}
            if schema is None:
                status["state"] = "failed: the table does not exist"
                continue
            status["state"] = "reading"
            try:
                rows = await self._snapshot_table(
                    writer, schema, last, request.key_from, request.key_to, asked=True
                )
            except (TerminalError, ValueError) as exc:
                logger.error("source job %s: re-snapshot of %s failed: %s",
                             self.source.name, request.name, exc)  # fmt: skip
                status["state"] = f"failed: {exc}"
                continue
            status.update(state="done", rows=rows)

    async def _snapshot_table(
        self,
        writer: ChangeWriter,
        schema: TableSchema,
        last: BinlogPosition,
        key_from: list[Any] | None = None,
        key_to: list[Any] | None = None,
        asked: bool = False,
    ) -> int:
        """Read one table's rows now, mid-stream, tagged with the snapshot's position.

        Every chunk commits with the progress from before the statement that asked for it, so
        a crash repeats the statement and this read. Binlog changes between the statement and
        the snapshot's position come later and sort before the snapshot rows: no-ops for the
        rows the snapshot holds (versioned writes), applied for the others.
        """
        name = f"{schema.database}.{schema.table}"
        if self.source.snapshot == "never" and not asked:
            logger.warning("source job %s: snapshot never: %s not read", self.source.name, name)
            return 0
        try:
            snap = await asyncio.to_thread(ConsistentSnapshot, self._address)
        except TerminalError as exc:
            if asked:
                raise
            logger.warning("source job %s: rows of %s not read: %s", self.source.name, name, exc)
            return 0
        try:
            pos_key = snap.position.key()
            source = self._source_block(snap.position, int(time.time() * 1000), snapshot=True)
            out = await self._open(schema)
            out.raw = None
            chunks = snap.chunks(
                schema, self.settings.snapshot_chunk_rows, key_from=key_from, key_to=key_to
            )
            rows_read = 0
            while (rows := await asyncio.to_thread(next, chunks, None)) is not None:
                for row in rows:
                    self._add(writer, out, "r", None, out.normalise(row), pos_key, source)
                rows_read += len(rows)
                await self._commit(writer, JobProgress("streaming", last, {}))
            logger.info(
                "source job %s: %d rows of %s read at %s", self.source.name, rows_read, name,
                snap.position,
            )  # fmt: skip
            return rows_read
        finally:
            await asyncio.to_thread(snap.close)

    async def _add_transaction(
        self, writer: ChangeWriter, txn: SourceTransaction, last: BinlogPosition
    ) -> None:
        """Queue a transaction (or a part of one); ``last`` is the resume point before it."""
        for k, item in enumerate(txn.changes):
            pos = txn.item_position(k)
            if isinstance(item, Statement):
                await self._on_statement(writer, item, pos, txn.ts_ms, last)
                continue
            if k and not k % 1000:
                await asyncio.sleep(0)  # a large part must not starve the worker's event loop
            pos_key = pos.key()
            out = await self._row_table(item, pos_key)
            if out is None:
                continue
            if self._pending and (item.database, item.table) in self._pending:
                # The first row of a new shape: its schema-change record goes right before it.
                await self._publish_pending(writer, (item.database, item.table), out.schema)
            source = self._source_block(pos, txn.ts_ms, snapshot=False, gtid=txn.gtid)
            self._add_change(writer, out, item, pos_key, source)

    def _add_change(
        self,
        writer: ChangeWriter,
        out: _TableOut,
        change: RowChange,
        pos_key: str,
        source: dict[str, Any],
    ) -> None:
        before = out.normalise(change.before) if change.before is not None else None
        after = out.normalise(change.after) if change.after is not None else None
        if change.op == "u" and before is not None and after is not None:
            old_key = [before.get(c) for c in out.key_columns]
            new_key = [after.get(c) for c in out.key_columns]
            if old_key != new_key:
                # A key change moves the row: delete under the old key, create under the new,
                # each in its own key's partition (as Debezium does).
                self._add(writer, out, "d", before, None, pos_key, source)
                self._add(writer, out, "c", None, after, pos_key, source)
                return
        self._add(writer, out, change.op, before, after, pos_key, source)
