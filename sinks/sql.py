"""A SQL target written through SQLAlchemy: versioned upserts and deletes, progress alongside.

Modes (docs/SINKS.md): ``upsert`` mirrors each table, as below for a table with a primary key
and as a multiset of rows for one without (sinks/sql_keyless.py); ``append`` writes a change log
(sinks/sql_append.py). Under ``consistency: exactly_once`` messages at or below the offset
checked at assignment (:attr:`SqlTarget.resume_from`, sinks/resume.py) are skipped.

Every row carries ``_sluice_pos``, the source position of the change that wrote it. A change is
applied only if it is newer than what the row holds, and a delete leaves a tombstone with its
position, so a change redelivered after a crash or an aborted transaction is a no-op and an older
change can never bring a deleted row back. Rows and the sink's progress (per topic partition: the
last offset and position applied) are written in one database transaction.

Targets: PostgreSQL and SQLite (``INSERT … ON CONFLICT DO UPDATE … WHERE``), MySQL and MariaDB
(``INSERT … ON DUPLICATE KEY UPDATE col = CASE WHEN <stored pos> < <new pos> THEN … END``, the
position assigned last because MySQL's assignments see the ones before them). MySQL/MariaDB
tables are InnoDB, utf8mb4 with a binary, no-pad collation (keys compare as exactly as in
PostgreSQL: ``'a'``, ``'A'`` and ``'a '`` are three rows), and the sink's sessions are strict, so
a value that does not fit is refused rather than cut. A tombstone is found by its table and a
SHA-256 of its row key, which keeps the key short enough for any index; the row key itself is
kept alongside.

Schema changes and truncates (app/records.py ops "s" and "t") arrive in every partition, exactly
between the rows of the old shape and those of the new one:

- Every batch's schema, op "s" or not, must fit the target: a missing table is created, a missing
  column added, a column whose values no longer fit widened (sinks/sql_migrate.py says which
  changes are safe). What cannot be evolved (a type the target cannot hold, a new primary key) is
  refused with a :class:`PoisonRecord` naming the statement and the reason; the delivery agent
  dead-letters it. The sink's ``schema_changes`` policy decides: ``evolve`` (default) applies safe
  changes and refuses unsafe ones; ``freeze`` never changes an existing target table, writes only
  the columns it has and dead-letters each schema change it would have needed (once per
  statement); ``discard`` does the same but only logs. A target table is created under every
  policy.
- ``renamed_columns`` (RENAME COLUMN, CHANGE a b): under ``evolve`` the new column is added and,
  after the batch's rows, given the old column's value in every row older than the statement, at
  each partition's record (rows of other partitions may still arrive in the old shape until their
  own record). The old column stays, no longer written.
- ``dropped`` (DROP TABLE, or the old name of a renamed table) and op "t" (TRUNCATE): every row
  of the target table older than the statement is deleted and a *table tombstone* at its position
  is kept beside the row tombstones, so an older change redelivered later cannot bring a row back.
  The target table itself stays (emptied); a table created again under the name fills it again.
  A renamed table's rows reach its new name's target through the snapshot the source job takes
  of it; the sink never renames a target table.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import CreateColumn

from app import faults
from app.errors import PoisonRecord
from app.pipeline import SqlSink
from app.records import CONTROL_OPS
from sinks import sql_append, sql_copy, sql_keyless, sql_migrate
from sinks.sql_types import MYSQL_DIALECTS, decoder, sql_type
from sources.schema import Column, TableSchema

logger = logging.getLogger(__name__)

POS_COLUMN = "_sluice_pos"
KEY_COLUMN = "_sluice_key"
COPY_COLUMN = "_sluice_copy"
OP_COLUMN = "_sluice_op"
TS_COLUMN = "_sluice_ts"
ANCHOR_COLUMN = "anchor"
# Fixed-width digits (sources/position.py): ASCII and a binary comparison on MySQL/MariaDB.
POS_TYPE = sa.String(40).with_variant(
    mysql.VARCHAR(40, charset="ascii", collation="ascii_bin"), *MYSQL_DIALECTS
)
KEY_HASH_TYPE = sa.String(64).with_variant(
    mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), *MYSQL_DIALECTS
)
SUPPORTED_DIALECTS = ("postgresql", "sqlite", *MYSQL_DIALECTS)
# Binary collations without trailing-space padding first (MySQL 8, MariaDB ≥ 10.2).
_MYSQL_COLLATIONS = ("utf8mb4_0900_bin", "utf8mb4_nopad_bin", "utf8mb4_bin")
# The row key of a table tombstone: never a row's key (those are JSON arrays).
TABLE_KEY = "*"
SCHEMA_POLICIES = ("evolve", "freeze", "discard")
_HASHES = postgresql.ARRAY(sa.String(64))


@dataclass
class IncomingBatch:
    """One CDC message for this sink: where it came from and its decoded content."""

    topic: str
    partition: int
    offset: int
    database: str
    table: str
    schema: TableSchema
    events: list[dict[str, Any]]
    # What identifies the message in its topic (sinks/resume.py): stored with the progress.
    anchor: str | None = None
    # The message's bytes, hashed into the anchor when none is given: only the last message of
    # each partition in a write is stored, so only that one is hashed.
    value: bytes | None = field(default=None, repr=False, compare=False)

    def identity(self) -> str | None:
        if self.anchor is None and self.value is not None:
            return anchor_of(self.value)
        return self.anchor


def anchor_of(value: bytes | None) -> str:
    """The anchor of a message: the SHA-256 of its value."""
    return hashlib.sha256(value or b"").hexdigest()


@dataclass
class _Target:
    table: sa.Table
    key_columns: tuple[str, ...]
    decoders: dict[str, Any]
    kind: str = "keyed"  # keyed (upsert by primary key), keyless (upsert, no key), append


@dataclass
class _After:
    """Work a control event leaves for after the rows of its transaction."""

    table: str  # target table name
    pos: str
    truncate: bool = False
    copy: dict[str, str] | None = None  # renamed columns: old → new


class SqlTarget:
    def __init__(self, config: SqlSink) -> None:
        self.config = config
        url = sa.engine.make_url(config.url.get_secret_value())
        self.engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            # JSON values are parsed with orjson (sinks/sql_types.py): written with it too, which
            # is several times faster than the standard library's encoder.
            json_serializer=_json_text,
            # psycopg prepares a statement it ran five times. Ours are large batches, planned
            # cheaply; prepared, the staged upsert over a temporary table made anew per batch
            # (sinks/sql_copy.py) and the tombstone lookup took PostgreSQL 3-6x the CPU (bench
            # CDC phase: 6.4 s of server CPU, 1.1 s unprepared).
            connect_args={"prepare_threshold": None} if url.get_driver_name() == "psycopg" else {},
        )
        self.dialect = self.engine.dialect.name
        if self.dialect not in SUPPORTED_DIALECTS:
            raise PoisonRecord(f"sink {config.name}: dialect {self.dialect} is not supported yet")
        self._table_options: dict[str, Any] = {}
        if self.dialect in MYSQL_DIALECTS:
            sa.event.listen(self.engine, "connect", _strict_mysql_session)
            self._table_options = self._mysql_table_options()
        self.metadata = sa.MetaData(schema=config.target_schema)
        self._targets: dict[tuple[str, str, tuple[Column, ...]], _Target] = {}
        # The pipeline's SqlSink grows a ``schema_changes`` field; until then: evolve.
        self.policy: str = config.schema_changes
        if self.policy not in SCHEMA_POLICIES:
            raise PoisonRecord(
                f"sink {config.name}: schema_changes {self.policy!r} is not one of "
                f"{SCHEMA_POLICIES}"
            )
        self._last_ddl: dict[tuple[str, str], str] = {}  # per source table, for error messages
        self.tombstones = sa.Table(
            "_sluice_tombstones",
            self.metadata,
            sa.Column("table_name", sa.String(200), primary_key=True),
            sa.Column("key_hash", KEY_HASH_TYPE, primary_key=True),
            sa.Column("row_key", sa.Text, nullable=False),
            sa.Column(POS_COLUMN, POS_TYPE, nullable=False),
            **self._table_options,
        )
        self.progress = sa.Table(
            "_sluice_progress",
            self.metadata,
            sa.Column("sink", sa.String(100), primary_key=True),
            sa.Column("topic", sa.String(250), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True),
            sa.Column("offset", sa.BigInteger, nullable=False),
            sa.Column(POS_COLUMN, POS_TYPE),
            sa.Column("updated_at", sa.DateTime, server_default=sa.func.now()),
            sa.Column(ANCHOR_COLUMN, KEY_HASH_TYPE, nullable=True),
            **self._table_options,
        )
        self.metadata.create_all(self.engine, [self.tombstones, self.progress])
        self._migrate_tombstones()
        self._migrate_progress()
        self.exactly_once = config.consistency == "exactly_once"
        # exactly_once: per topic partition, the stored offset checked at assignment
        # (sinks/resume.py); a message at or below it is skipped.
        self.resume_from: dict[tuple[str, int], int] = {}

    def _mysql_table_options(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            known = set(
                conn.execute(
                    sa.text(
                        "SELECT collation_name FROM information_schema.collations "
                        "WHERE collation_name IN :names"
                    ).bindparams(sa.bindparam("names", expanding=True)),
                    {"names": list(_MYSQL_COLLATIONS)},
                ).scalars()
            )
        collation = next((c for c in _MYSQL_COLLATIONS if c in known), "utf8mb4_bin")
        # SQLAlchemy reads the options under the dialect's own name: mysql_… or mariadb_….
        options = {"engine": "InnoDB", "charset": "utf8mb4", "collate": collation}
        return {f"{self.dialect}_{k}": v for k, v in options.items()}

    def _migrate_tombstones(self) -> None:
        """Rewrite a tombstones table of earlier builds (the row key itself in the primary key;
        PostgreSQL and SQLite only, both with transactional DDL) in the current layout."""
        t = self.tombstones
        found = sa.inspect(self.engine).get_columns(t.name, schema=t.schema)
        if "key_hash" in {c["name"] for c in found}:
            return
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(t.c.table_name, t.c.row_key, t.c[POS_COLUMN])).all()
            t.drop(conn)
            t.create(conn)
            if old:
                conn.execute(
                    t.insert(),
                    [
                        {"table_name": n, "key_hash": _key_hash(k), "row_key": k, POS_COLUMN: p}
                        for n, k, p in old
                    ],
                )
        logger.info("sink %s: %s rewritten with key hashes", self.config.name, t.name)

    def _migrate_progress(self) -> None:
        """Give a progress table of earlier builds its (nullable) anchor column."""
        t = self.progress
        found = sa.inspect(self.engine).get_columns(t.name, schema=t.schema)
        if ANCHOR_COLUMN in {c["name"] for c in found}:
            return
        column = sa.Column(ANCHOR_COLUMN, KEY_HASH_TYPE, nullable=True)
        ddl = CreateColumn(column).compile(dialect=self.engine.dialect)
        name = self.engine.dialect.identifier_preparer.format_table(t)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {ddl}"))
        logger.info("sink %s: %s given an anchor column", self.config.name, t.name)

    def close(self) -> None:
        self.engine.dispose()

    def wants(self, database: str, table: str) -> bool:
        return self.config.tables.matches(database, table)

    def target_name(self, database: str, table: str) -> str:
        return self.config.table_name.format(database=database, table=table)

    def _forget_targets(self, database: str, table: str) -> None:
        for key in [k for k in self._targets if k[:2] == (database, table)]:
            del self._targets[key]

    def _refusal(self, schema: TableSchema, ddl: str | None, reasons: str) -> PoisonRecord:
        name = self.target_name(schema.database, schema.table)
        after = f" after `{ddl}`" if ddl else ""
        return PoisonRecord(
            f"sink {self.config.name}: target table {name} cannot take the shape of "
            f"{schema.database}.{schema.table}{after}: {reasons} (schema_changes: {self.policy}; "
            "change the target table by hand, or set schema_changes: discard)"
        )

    def _kind(self, schema: TableSchema) -> str:
        if self.config.mode == "append":
            return "append"
        return "keyed" if schema.primary_key else "keyless"

    def _target_key(self, schema: TableSchema) -> tuple[str, ...]:
        """The primary key of the target table of ``schema``."""
        kind = self._kind(schema)
        if kind == "append":
            return (POS_COLUMN, KEY_COLUMN, COPY_COLUMN)
        if kind == "keyless":
            return (KEY_COLUMN, COPY_COLUMN)
        return schema.primary_key

    def _target(self, schema: TableSchema, ddl: str | None = None) -> _Target:
        """The target table for rows of ``schema``: created, or evolved by the sink's policy."""
        cache_key = (schema.database, schema.table, schema.columns)
        target = self._targets.get(cache_key)
        if target is not None:
            return target
        kind = self._kind(schema)
        source_key = schema.primary_key if kind == "keyed" else ()
        name = self.target_name(schema.database, schema.table)
        qualified = f"{self.metadata.schema}.{name}" if self.metadata.schema else name
        if qualified in self.metadata.tables:  # the schema changed: describe the table anew
            self.metadata.remove(self.metadata.tables[qualified])
        inspector = sa.inspect(self.engine)
        if not inspector.has_table(name, schema=self.metadata.schema):
            write = {c.name: c for c in schema.columns}
            table = self._table(name, schema, write)
            table.create(self.engine, checkfirst=True)
        else:
            found = inspector.get_columns(name, schema=self.metadata.schema)
            pk = inspector.get_pk_constraint(name, schema=self.metadata.schema)
            expected = self._target_key(schema)
            if list(pk.get("constrained_columns") or []) != list(expected):
                raise self._refusal(
                    schema,
                    ddl or self._last_ddl.get((schema.database, schema.table)),
                    f"its primary key is {tuple(pk.get('constrained_columns') or [])}, the "
                    f"sink's {expected} (mode {self.config.mode})",
                )
            existing = {c["name"]: c["type"] for c in found}
            plan = sql_migrate.plan(existing, schema.columns, self.engine.dialect)
            if self.policy == "evolve":
                if plan.unsafe:
                    raise self._refusal(
                        schema,
                        ddl or self._last_ddl.get((schema.database, schema.table)),
                        "; ".join(plan.unsafe),
                    )
                write = plan.write
            else:  # freeze, discard: the target keeps its shape; what it lacks is not written
                write = {n: c for n, c in plan.write.items() if n in existing}
            table = self._table(name, schema, write)
            if self.policy == "evolve" and (plan.add or plan.widen):
                sql_migrate.apply_plan(self.engine, table, plan, source_key)
                self._forget_targets(schema.database, schema.table)  # their types may be stale
        target = _Target(table, schema.key_columns, {n: decoder(c) for n, c in write.items()}, kind)
        self._targets[cache_key] = target
        return target

    def _table(self, name: str, schema: TableSchema, write: dict[str, Column]) -> sa.Table:
        kind = self._kind(schema)
        source_key = schema.primary_key if kind == "keyed" else ()
        columns = [
            sa.Column(
                c.name,
                sql_type(write[c.name]),
                primary_key=c.name in source_key,
                # A mirror takes the source's key values as they are: no AUTO_INCREMENT (MySQL
                # would replace a key of 0 with the next counter value) and no SERIAL.
                autoincrement=False,
                # Nullable: an added column must be addable to a table that already has rows.
                nullable=c.name not in source_key,
            )
            for c in schema.columns
            if c.name in write
        ]
        extra: list[sa.Column[Any]]
        if kind == "keyed":
            extra = [sa.Column(POS_COLUMN, POS_TYPE)]
        elif kind == "keyless":
            extra = [
                sa.Column(KEY_COLUMN, KEY_HASH_TYPE, primary_key=True),
                sa.Column(COPY_COLUMN, sa.Integer, primary_key=True, autoincrement=False),
                sa.Column(POS_COLUMN, POS_TYPE),
            ]
        else:
            extra = [
                sa.Column(OP_COLUMN, sa.String(1), nullable=False),
                sa.Column(POS_COLUMN, POS_TYPE, primary_key=True),
                sa.Column(KEY_COLUMN, KEY_HASH_TYPE, primary_key=True),
                sa.Column(COPY_COLUMN, sa.Integer, primary_key=True, autoincrement=False),
                sa.Column(
                    TS_COLUMN,
                    sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQL_DIALECTS),
                    nullable=True,
                ),
            ]
        return sa.Table(name, self.metadata, *columns, *extra, **self._table_options)

    def _control(self, b: IncomingBatch, ev: dict[str, Any]) -> _After | None:
        """Act on an op "s"/"t" event before the rows; what remains for after them.

        A schema change the target does not follow is reported once per statement, by the
        record of partition 0 (a dead letter, under evolve and freeze); the records of the
        other partitions only log it. Rows that cannot be written are refused on their own.
        """
        name = self.target_name(b.database, b.table)
        if ev["op"] == "t" or ev.get("dropped"):
            self._forget_targets(b.database, b.table)
            return _After(name, ev["pos"], truncate=True)
        ddl = ev.get("ddl") or ""
        self._last_ddl[(b.database, b.table)] = ddl
        schema = b.schema
        if not schema.columns:
            return None
        try:
            if self.policy != "evolve":
                self._report_unevolved(schema, ddl)
            self._target(schema, ddl)
        except PoisonRecord as exc:
            if b.partition == 0:
                raise
            logger.warning("sink %s: %s", self.config.name, exc)
            return None
        renamed = ev.get("renamed_columns") or {}
        if self.policy == "evolve" and renamed:
            return _After(name, ev["pos"], copy=dict(renamed))
        return None

    def _report_unevolved(self, schema: TableSchema, ddl: str) -> None:
        """Under freeze (a dead letter) or discard (a log line): what the target did not follow."""
        name = self.target_name(schema.database, schema.table)
        inspector = sa.inspect(self.engine)
        if not inspector.has_table(name, schema=self.metadata.schema):
            return  # it will be created with this shape
        found = inspector.get_columns(name, schema=self.metadata.schema)
        plan = sql_migrate.plan(
            {c["name"]: c["type"] for c in found}, schema.columns, self.engine.dialect
        )
        if not plan.changes:
            return
        said = f"target table {name} kept as it is (schema_changes: {self.policy}) after `{ddl}`"
        if self.policy == "discard":
            logger.info("sink %s: %s: %s", self.config.name, said, plan.describe())
            return
        raise PoisonRecord(f"sink {self.config.name}: {said}: {plan.describe()}")

    def apply(self, batches: Sequence[IncomingBatch]) -> int:
        """Write the batches in one transaction; returns how many changes were written.

        Replayed or outdated changes are counted too: they are written as no-ops. Control
        events shape the target before the rows (new columns, wider types) and, after the rows,
        delete what a truncate or drop removed and copy renamed columns; positions make that
        order right whatever the interleaving of partitions in the call. Under
        ``exactly_once`` a message at or below its partition's :attr:`resume_from` offset is
        skipped: neither applied nor counted.
        """
        if self.exactly_once and self.resume_from:
            batches = [b for b in batches if not self._already_applied(b)]
        if self.config.mode == "append":
            return self._apply_append(batches)
        latest: dict[tuple[str, str], dict[str, tuple[_Target, dict[str, Any]]]] = {}
        keyless: dict[tuple[str, str], list[tuple[_Target, str, str, dict[str, Any]]]] = {}
        after: list[_After] = []
        for b in batches:
            if not self.wants(b.database, b.table):
                continue
            rows = b.events
            if any(ev["op"] in CONTROL_OPS for ev in b.events):
                rows = []
                for ev in b.events:
                    if ev["op"] in CONTROL_OPS:
                        todo = self._control(b, ev)
                        if todo is not None:
                            after.append(todo)
                    else:
                        rows.append(ev)
            if not rows:
                continue
            target = self._target(b.schema)
            if target.kind == "keyless":
                keyless_changes = keyless.setdefault((b.database, b.table), [])
                for rk, version, ev in _versioned(rows, target.key_columns):
                    keyless_changes.append((target, rk, version, ev))
                continue
            per_key = latest.setdefault((b.database, b.table), {})
            for ev in rows:
                rk = _row_key(ev["key"], target.key_columns)
                seen = per_key.get(rk)
                if seen is None or seen[1]["pos"] < ev["pos"]:
                    per_key[rk] = (target, ev)
        applied = 0
        with self.engine.begin() as conn:
            for changes in latest.values():
                applied += self._apply_table(conn, changes)
            for items in keyless.values():
                applied += sql_keyless.apply(self, conn, items)
            for todo in after:
                applied += self._apply_after(conn, todo)
            # Rows written, progress not yet, the database transaction open.
            faults.checkpoint("sink_mid_write")
            self._record_progress(conn, batches)
        return applied

    def _already_applied(self, b: IncomingBatch) -> bool:
        stored = self.resume_from.get((b.topic, b.partition))
        return stored is not None and b.offset <= stored

    def _apply_append(self, batches: Sequence[IncomingBatch]) -> int:
        """One change-log row per change; a redelivered change hits its primary key and is
        dropped (sinks/sql_append.py)."""
        rows: list[tuple[_Target, dict[str, Any]]] = []
        for b in batches:
            if not self.wants(b.database, b.table):
                continue
            target: _Target | None = None
            for ev, copy in zip(b.events, _copies(b.events), strict=True):
                if ev["op"] == "s":
                    if not ev.get("dropped"):  # a dropped table's change log stays as it is
                        self._control(b, ev)
                    target = None
                    continue
                if target is None:
                    target = self._target(b.schema)
                rows.append((target, sql_append.row(target, ev, copy)))
        with self.engine.begin() as conn:
            applied = sql_append.insert(self, conn, rows)
            self._record_progress(conn, batches)
        return applied

    def _apply_after(self, conn: sa.Connection, todo: _After) -> int:
        inspector = sa.inspect(conn)
        where = self.metadata.schema
        exists = inspector.has_table(todo.table, schema=where)
        table = sa.table(todo.table, sa.column(POS_COLUMN), schema=where)
        if todo.truncate:
            if exists:
                conn.execute(table.delete().where(table.c[POS_COLUMN] < todo.pos))
            t = self.tombstones
            conn.execute(
                t.delete().where(
                    t.c.table_name == todo.table,
                    t.c.row_key != TABLE_KEY,
                    t.c[POS_COLUMN] < todo.pos,
                )
            )
            conn.execute(
                self._versioned_upsert(t, [], POS_COLUMN),
                [
                    {
                        "table_name": todo.table,
                        "key_hash": _key_hash(TABLE_KEY),
                        "row_key": TABLE_KEY,
                        POS_COLUMN: todo.pos,
                    }
                ],
            )
            return 1
        if todo.copy and exists:
            present = {c["name"] for c in inspector.get_columns(todo.table, schema=where)}
            pairs = {old: new for old, new in todo.copy.items() if {old, new} <= present}
            if pairs:
                cols: list[sa.ColumnClause[Any]] = [sa.column(c) for c in {*pairs, *pairs.values()}]
                full = sa.table(todo.table, sa.column(POS_COLUMN), *cols, schema=where)
                conn.execute(
                    full.update()
                    .where(full.c[POS_COLUMN] < todo.pos)
                    .values({full.c[new]: full.c[old] for old, new in pairs.items()})
                )
        return 0

    def _apply_table(
        self, conn: sa.Connection, changes: dict[str, tuple[_Target, dict[str, Any]]]
    ) -> int:
        if not changes:
            return 0
        target = next(iter(changes.values()))[0]
        tname = target.table.name
        tombs = self._tombstones(conn, tname, [TABLE_KEY, *changes])
        floor = tombs.pop(TABLE_KEY, "")  # a truncate or drop: nothing older comes back
        # Rows of one table may come in several shapes (a schema change inside the call): each
        # shape is written with its own columns, so an old-shape row leaves a new column alone.
        upserts: dict[int, tuple[_Target, list[dict[str, Any]]]] = {}
        deletes: list[tuple[str, dict[str, Any]]] = []
        for rk, (tgt, ev) in changes.items():
            if ev["op"] == "d":
                if floor < ev["pos"]:  # older than a truncate: nothing left to delete
                    deletes.append((rk, ev))
            elif max(tombs.get(rk, ""), floor) < ev["pos"]:
                rows = upserts.setdefault(id(tgt), (tgt, []))[1]
                rows.append(_decode_row(tgt, ev["after"], ev["pos"]))
        for tgt, rows in upserts.values():
            self._upsert(conn, tgt, rows)
        if deletes:
            self._delete(conn, target, deletes)
        return sum(len(rows) for _, rows in upserts.values()) + len(deletes)

    def _tombstones(self, conn: sa.Connection, table: str, keys: list[str]) -> dict[str, str]:
        t = self.tombstones
        found: dict[str, str] = {}
        # PostgreSQL takes the hashes as one array parameter: rendering and binding an IN list
        # of hundreds of parameters cost more than the rest of a snapshot row's write.
        array = self.dialect == "postgresql"
        step = 10_000 if array else 500
        for i in range(0, len(keys), step):
            hashes = [_key_hash(k) for k in keys[i : i + step]]
            match = (
                t.c.key_hash == sa.any_(sa.bindparam("hashes", hashes, type_=_HASHES))
                if array
                else t.c.key_hash.in_(hashes)
            )
            rows = conn.execute(
                sa.select(t.c.row_key, t.c[POS_COLUMN]).where(t.c.table_name == table, match)
            )
            found.update({r[0]: r[1] for r in rows})
        return found

    def _versioned_upsert(
        self,
        table: sa.Table,
        columns: Sequence[str],
        version: str,
        source: tuple[list[str], sa.Select[Any]] | None = None,
    ) -> Any:
        """INSERT that, on a primary key conflict, sets ``columns`` and ``version`` to the new
        values only if the stored ``version`` is lower than the new one; else changes nothing.
        ``source`` (PostgreSQL and SQLite): insert the rows of a SELECT (column names, query)
        instead of bound values."""
        if self.dialect in MYSQL_DIALECTS:
            ins = mysql.insert(table)
            newer = table.c[version] < ins.inserted[version]
            # MySQL assigns left to right and each assignment sees the values assigned before it:
            # ``version`` goes last, so every condition compares with the stored version.
            return ins.on_duplicate_key_update(
                [
                    (c, sa.case((newer, ins.inserted[c]), else_=table.c[c]))
                    for c in [*columns, version]
                ]
            )
        stmt = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)
        if source is not None:
            stmt = stmt.from_select(*source)
        return stmt.on_conflict_do_update(
            index_elements=list(table.primary_key.columns),
            set_={c: stmt.excluded[c] for c in [*columns, version]},
            where=table.c[version] < stmt.excluded[version],
        )

    def _upsert(self, conn: sa.Connection, target: _Target, rows: list[dict[str, Any]]) -> None:
        table = target.table
        values = [c.name for c in table.columns if not c.primary_key and c.name != POS_COLUMN]
        if sql_copy.usable(conn.dialect, rows):
            names = list(rows[0])
            sets = [c for c in values if c in rows[0]]
            sql_copy.upsert(
                conn,
                table,
                rows,
                lambda select: self._versioned_upsert(table, sets, POS_COLUMN, (names, select)),
            )
            return
        stmt = self._versioned_upsert(table, values, POS_COLUMN)
        for i in range(0, len(rows), 1000):
            conn.execute(stmt, rows[i : i + 1000])

    def _delete(
        self, conn: sa.Connection, target: _Target, deletes: list[tuple[str, dict[str, Any]]]
    ) -> None:
        table = target.table
        cond = [table.c[k] == sa.bindparam(f"k_{k}") for k in target.key_columns]
        stmt = table.delete().where(*cond, table.c[POS_COLUMN] < sa.bindparam("p"))
        params = []
        for _, ev in deletes:
            key = {f"k_{k}": target.decoders[k](v) for k, v in ev["key"].items()}
            params.append({**key, "p": ev["pos"]})
        conn.execute(stmt, params)
        conn.execute(
            self._versioned_upsert(self.tombstones, [], POS_COLUMN),
            [
                {
                    "table_name": table.name,
                    "key_hash": _key_hash(rk),
                    "row_key": rk,
                    POS_COLUMN: ev["pos"],
                }
                for rk, ev in deletes
            ],
        )

    def _record_progress(self, conn: sa.Connection, batches: Iterable[IncomingBatch]) -> None:
        last: dict[tuple[str, int], tuple[int, str, IncomingBatch]] = {}
        for b in batches:
            top = max((ev["pos"] for ev in b.events), default="")
            prev = last.get((b.topic, b.partition))
            if prev is None or prev[0] < b.offset:
                last[(b.topic, b.partition)] = (b.offset, top, b)
        if not last:
            return
        conn.execute(
            self._versioned_upsert(self.progress, [POS_COLUMN, ANCHOR_COLUMN], "offset"),
            [
                {
                    "sink": self.config.name,
                    "topic": t,
                    "partition": p,
                    "offset": o,
                    POS_COLUMN: pos,
                    ANCHOR_COLUMN: b.identity(),
                }
                for (t, p), (o, pos, b) in last.items()
            ],
        )

    def stored_anchor(self, topic: str, partition: int) -> tuple[int, str | None] | None:
        """The stored offset of a topic partition and the anchor of the record there."""
        p = self.progress
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(p.c.offset, p.c[ANCHOR_COLUMN]).where(
                    p.c.sink == self.config.name, p.c.topic == topic, p.c.partition == partition
                )
            ).first()
        return None if found is None else (found[0], found[1])

    def drop_progress(self, topic: str, partition: int) -> None:
        """Forget a topic partition's progress (its topic is not the one it was stored for)."""
        p = self.progress
        with self.engine.begin() as conn:
            conn.execute(
                p.delete().where(
                    p.c.sink == self.config.name, p.c.topic == topic, p.c.partition == partition
                )
            )
        self.resume_from.pop((topic, partition), None)

    def stored_progress(self) -> dict[tuple[str, int], int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    self.progress.c.topic, self.progress.c.partition, self.progress.c.offset
                ).where(self.progress.c.sink == self.config.name)
            )
            return {(r[0], r[1]): r[2] for r in rows}


def _row_key(key: dict[str, Any], columns: tuple[str, ...]) -> str:
    return orjson.dumps([key.get(c) for c in columns]).decode()


def _copies(events: Sequence[dict[str, Any]]) -> list[int]:
    """Per event: how many events before it in the message share its position and key
    (identical rows of a keyless table read by one snapshot; else 0)."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for ev in events:
        k = (ev["pos"], orjson.dumps(ev.get("key"), option=orjson.OPT_SORT_KEYS).decode())
        out.append(seen.get(k, 0))
        seen[k] = out[-1] + 1
    return out


def _versioned(
    rows: Sequence[dict[str, Any]], key_columns: tuple[str, ...]
) -> list[tuple[str, str, dict[str, Any]]]:
    """(row key, version, event) per change of a keyless table: the version is the position
    and the event's copy number at that position, fixed width so it compares as a string."""
    return [
        (_row_key(ev["key"], key_columns), f"{ev['pos']}.{copy:06d}", ev)
        for ev, copy in zip(rows, _copies(rows), strict=True)
    ]


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _key_hash(row_key: str) -> str:
    return hashlib.sha256(row_key.encode()).hexdigest()


def _strict_mysql_session(dbapi_connection: Any, _record: Any) -> None:
    """Refuse a value that does not fit instead of cutting or zeroing it, whatever the server's
    default ``sql_mode`` is."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(
            "SET SESSION sql_mode = TRIM(BOTH ',' FROM CONCAT(@@SESSION.sql_mode, "
            "',STRICT_ALL_TABLES'))"
        )
    finally:
        cursor.close()


def _decode_row(target: _Target, after: dict[str, Any], pos: str) -> dict[str, Any]:
    row = {
        name: (None if v is None else target.decoders[name](v))
        for name, v in after.items()
        if name in target.decoders
    }
    row[POS_COLUMN] = pos
    return row
