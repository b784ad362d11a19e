"""SqlTarget against real PostgreSQL, SQLite and MariaDB: versioned upserts, tombstones, progress.

Every promise of sinks/sql.py's docstring, on every dialect. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from app.pipeline import SqlSink, TableFilter
from devstack.mariadb import PrivateMariaDB
from sinks import sql_copy
from sinks.sql import POS_COLUMN, IncomingBatch, SqlTarget
from sinks.sql_types import sql_type
from sources.position import BinlogPosition
from sources.schema import Column, TableSchema
from sources.values import row_normaliser

pytestmark = pytest.mark.integration

ORDERS = TableSchema(
    "shop",
    "orders",
    (
        Column("id", "bigint", "bigint(20)", False),
        Column("name", "varchar", "varchar(100)"),
        Column("price", "decimal", "decimal(12,2)"),
        Column("at", "datetime", "datetime(6)"),
        Column("dur", "time", "time(6)"),
        Column("doc", "json", "json"),
        Column("data", "blob", "blob"),
    ),
    ("id",),
)

LINES = TableSchema(
    "shop",
    "lines",
    (
        Column("order_id", "bigint", "bigint(20)", False),
        Column("line_no", "int", "int(11)", False),
        Column("qty", "int", "int(11)"),
    ),
    ("order_id", "line_no"),
)

TOPIC = "sluice.shop.orders"


def pos(p: int, row: int = 0, file_seq: int = 1) -> str:
    return BinlogPosition(file_seq, p, row).key()


def order(i: int, name: str | None = "n", **extra: Any) -> dict[str, Any]:
    """A source row of ORDERS as PyMySQL would deliver it."""
    row: dict[str, Any] = {
        "id": i,
        "name": name,
        "price": decimal.Decimal("12.50") + i,
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        "dur": -dt.timedelta(hours=838, minutes=59, seconds=59),
        "doc": '{"tags": ["a", "b"], "n": 1}',
        "data": b"\x00\xffbytes",
    }
    row.update(extra)
    return row


def change(
    op: str,
    key: dict[str, Any],
    after: dict[str, Any] | None,
    at: str,
    schema: TableSchema = ORDERS,
    before: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ChangeEvent (app/records.py) with the values normalised as the source does."""
    normalise = row_normaliser(schema.columns)
    return {
        "op": op,
        "key": key,
        "before": None if before is None else normalise(before),
        "after": None if after is None else normalise(after),
        "pos": at,
    }


def ins(i: int, at: str, name: str = "n", op: str = "c") -> dict[str, Any]:
    return change(op, {"id": i}, order(i, name), at)


def upd(i: int, at: str, name: str) -> dict[str, Any]:
    return change("u", {"id": i}, order(i, name), at, before=order(i))


def dele(i: int, at: str) -> dict[str, Any]:
    return change("d", {"id": i}, None, at, before=order(i))


@dataclass
class Env:
    target: SqlTarget
    suffix: str

    def batch(
        self,
        events: list[dict[str, Any]],
        offset: int = 0,
        partition: int = 0,
        topic: str = TOPIC,
        schema: TableSchema = ORDERS,
    ) -> IncomingBatch:
        return IncomingBatch(
            topic, partition, offset, schema.database, schema.table, schema, events
        )

    def table_name(self, schema: TableSchema = ORDERS) -> str:
        return f"{schema.table}_{self.suffix}"

    def rows(self, schema: TableSchema = ORDERS) -> dict[Any, dict[str, Any]]:
        """The target table's rows by key, read with the documented type mapping."""
        table = sa.Table(
            self.table_name(schema),
            sa.MetaData(),
            *[sa.Column(c.name, sql_type(c)) for c in schema.columns],
            sa.Column(POS_COLUMN, sa.String(40)),
        )
        with self.target.engine.connect() as conn:
            out: dict[Any, dict[str, Any]] = {}
            for r in conn.execute(sa.select(table)).mappings():
                key = tuple(r[k] for k in schema.primary_key)
                out[key[0] if len(key) == 1 else key] = dict(r)
            return out

    def names(self) -> dict[int, str]:
        return {k: r["name"] for k, r in self.rows().items()}


@contextlib.contextmanager
def mariadb_database(server: PrivateMariaDB, name: str) -> Iterator[str]:
    """A fresh database on the private MariaDB; its SQLAlchemy URL."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql+pymysql://root@{server.host}:{server.port}/{name}?charset=utf8mb4"
    finally:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(params=["postgresql", "sqlite", "mariadb"])
def env(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Env]:
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url: str = request.getfixturevalue("pg_url")
        elif request.param == "mariadb":
            url = stack.enter_context(
                mariadb_database(request.getfixturevalue("mariadb"), f"tgt_{unique}")
            )
        else:
            url = f"sqlite:///{tmp_path / 'target.db'}"
        sink = SqlSink(
            name=f"sink_{unique}",
            url=url,  # validated into a SecretStr
            source="s",
            table_name="{table}_" + unique,
        )
        target = SqlTarget(sink)
        stack.callback(target.close)
        yield Env(target, unique)


def test_insert_then_update_is_applied_with_its_values(env: Env) -> None:
    env.target.apply([env.batch([ins(1, pos(100)), ins(2, pos(101))], offset=0)])
    env.target.apply([env.batch([upd(1, pos(200), "renamed")], offset=1)])
    rows = env.rows()
    assert set(rows) == {1, 2}
    assert rows[1]["name"] == "renamed"
    assert rows[2]["name"] == "n"
    assert rows[1][POS_COLUMN] == pos(200)
    assert rows[2][POS_COLUMN] == pos(101)
    # Every value arrives as the source held it.
    r = rows[2]
    assert r["price"] == decimal.Decimal("14.50")
    assert r["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert r["dur"] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert r["doc"] == {"tags": ["a", "b"], "n": 1}
    assert r["data"] == b"\x00\xffbytes"


def test_snapshot_read_rows_are_upserted(env: Env) -> None:
    env.target.apply([env.batch([ins(5, pos(50), "snap", op="r")])])
    assert env.names() == {5: "snap"}


def test_null_values_are_written_as_null(env: Env) -> None:
    row = order(1, name=None, price=None, at=None, dur=None, doc=None, data=None)
    env.target.apply([env.batch([change("c", {"id": 1}, row, pos(10))])])
    r = env.rows()[1]
    assert [r[c] for c in ("name", "price", "at", "dur", "data")] == [None] * 5
    assert r["doc"] is None


def test_replaying_a_batch_is_a_no_op(env: Env) -> None:
    batch = env.batch([ins(1, pos(100)), ins(2, pos(101)), upd(1, pos(102), "u1")], offset=4)
    later = env.batch([upd(2, pos(300), "u2"), dele(1, pos(301))], offset=5)
    env.target.apply([batch])
    env.target.apply([later])
    after_both = env.rows()
    assert env.names() == {2: "u2"}
    env.target.apply([batch])
    env.target.apply([later])
    env.target.apply([batch, later])
    assert env.rows() == after_both


def test_an_older_change_does_not_overwrite_a_newer_one(env: Env) -> None:
    env.target.apply([env.batch([ins(1, pos(100))], offset=0)])
    env.target.apply([env.batch([upd(1, pos(300), "newest")], offset=1)])
    env.target.apply([env.batch([upd(1, pos(200), "older")], offset=2)])
    env.target.apply([env.batch([ins(1, pos(100), "oldest")], offset=3)])
    assert env.names() == {1: "newest"}
    assert env.rows()[1][POS_COLUMN] == pos(300)


def test_an_older_replay_after_a_newer_change_leaves_every_column_at_the_newer_values(
    env: Env,
) -> None:
    # Guards the order of MySQL's ON DUPLICATE KEY UPDATE assignments: were the position set
    # before the other columns, their conditions would see the new position and keep old values.
    old = order(1, "old", price=decimal.Decimal("1.00"), doc='{"v": 1}', data=b"old")
    old.update(at=dt.datetime(2001, 1, 1), dur=dt.timedelta(seconds=1))
    new = order(1, "new", price=decimal.Decimal("2.00"), doc='{"v": 2}', data=b"new")
    new.update(at=dt.datetime(2002, 2, 2, 2, 2, 2, 2), dur=-dt.timedelta(microseconds=1))
    expected = {
        "id": 1,
        "name": "new",
        "price": decimal.Decimal("2.00"),
        "at": dt.datetime(2002, 2, 2, 2, 2, 2, 2),
        "dur": -dt.timedelta(microseconds=1),
        "doc": {"v": 2},
        "data": b"new",
        POS_COLUMN: pos(300),
    }
    env.target.apply([env.batch([change("c", {"id": 1}, old, pos(100))], offset=0)])
    env.target.apply([env.batch([change("u", {"id": 1}, new, pos(300), before=old)], offset=1)])
    assert env.rows() == {1: expected}
    env.target.apply([env.batch([change("c", {"id": 1}, old, pos(100))], offset=0)])
    env.target.apply([env.batch([change("u", {"id": 1}, old, pos(200), before=new)], offset=2)])
    assert env.rows() == {1: expected}


def test_a_key_of_zero_is_kept(env: Env) -> None:
    env.target.apply([env.batch([ins(0, pos(100), "zero"), ins(1, pos(101), "one")])])
    env.target.apply([env.batch([upd(0, pos(200), "zero again")])])
    assert env.names() == {0: "zero again", 1: "one"}


def test_string_keys_differing_in_case_or_trailing_space_are_distinct_rows(env: Env) -> None:
    tags = TableSchema(
        "shop",
        "tags",
        (Column("tag", "varchar", "varchar(20)", False), Column("n", "int", "int(11)")),
        ("tag",),
    )

    def tag(op: str, t: str, n: int, at: str) -> dict[str, Any]:
        return change(op, {"tag": t}, None if op == "d" else {"tag": t, "n": n}, at, tags)

    keys = ["a", "A", "a ", "ä"]
    env.target.apply(
        [env.batch([tag("c", t, i, pos(10 + i)) for i, t in enumerate(keys)], schema=tags)]
    )
    env.target.apply([env.batch([tag("d", "A", 0, pos(20))], schema=tags)])
    env.target.apply([env.batch([tag("u", "a ", 9, pos(21))], schema=tags)])
    assert {k: r["n"] for k, r in env.rows(tags).items()} == {"a": 0, "a ": 9, "ä": 3}


def test_a_long_non_ascii_key_gets_its_tombstone(env: Env) -> None:
    # The row key of the tombstone (JSON of the key values) is longer than the key column.
    notes = TableSchema(
        "shop",
        "notes",
        (Column("k", "varchar", "varchar(700)", False), Column("n", "int", "int(11)")),
        ("k",),
    )
    k = "é" * 699 + '"'

    def note(op: str, n: int, at: str) -> dict[str, Any]:
        return change(op, {"k": k}, None if op == "d" else {"k": k, "n": n}, at, notes)

    env.target.apply([env.batch([note("c", 1, pos(10))], schema=notes)])
    env.target.apply([env.batch([note("d", 0, pos(20))], schema=notes)])
    env.target.apply([env.batch([note("u", 2, pos(15))], schema=notes)])
    assert env.rows(notes) == {}
    env.target.apply([env.batch([note("c", 3, pos(30))], schema=notes)])
    assert {key: r["n"] for key, r in env.rows(notes).items()} == {k: 3}


def test_a_binary_key_is_a_key(env: Env) -> None:
    blobs = TableSchema(
        "shop",
        "blobs",
        (Column("uuid", "binary", "binary(16)", False), Column("n", "int", "int(11)")),
        ("uuid",),
    )
    u1, u2 = bytes(range(16)), b"\xff" * 15 + b"\x00"

    def blob(op: str, u: bytes, n: int, at: str) -> dict[str, Any]:
        key = row_normaliser(blobs.columns[:1])({"uuid": u})
        return change(op, key, None if op == "d" else {"uuid": u, "n": n}, at, blobs)

    events = [blob("c", u1, 1, pos(10)), blob("c", u2, 2, pos(11)), blob("d", u1, 0, pos(12))]
    env.target.apply([env.batch(events, schema=blobs)])
    env.target.apply([env.batch([blob("u", u1, 5, pos(11))], schema=blobs)])
    assert {key: r["n"] for key, r in env.rows(blobs).items()} == {u2: 2}


def test_time_values_keep_sign_hours_and_microseconds(env: Env) -> None:
    durations = [
        dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
        -dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
        -dt.timedelta(microseconds=1),
        dt.timedelta(hours=25, microseconds=500),
        dt.timedelta(0),
    ]
    events = [change("c", {"id": i}, order(i, dur=d), pos(10 + i)) for i, d in enumerate(durations)]
    env.target.apply([env.batch(events)])
    assert [r["dur"] for _, r in sorted(env.rows().items())] == durations


def test_position_order_spans_binlog_files(env: Env) -> None:
    env.target.apply([env.batch([upd(1, pos(4, file_seq=10), "in file 10")])])
    env.target.apply([env.batch([upd(1, pos(999_999, file_seq=9), "in file 9")])])
    assert env.names() == {1: "in file 10"}


def test_a_later_row_of_the_same_transaction_wins(env: Env) -> None:
    env.target.apply([env.batch([upd(1, pos(500, row=2), "row 2")])])
    env.target.apply([env.batch([upd(1, pos(500, row=1), "row 1")])])
    assert env.names() == {1: "row 2"}


def test_delete_removes_the_row_and_its_tombstone_blocks_older_changes(env: Env) -> None:
    env.target.apply([env.batch([ins(1, pos(100)), ins(2, pos(101))], offset=0)])
    env.target.apply([env.batch([dele(1, pos(200))], offset=1)])
    assert env.names() == {2: "n"}
    # The insert and an update from before the delete are redelivered: the row stays deleted.
    env.target.apply([env.batch([ins(1, pos(100), "zombie")], offset=0)])
    env.target.apply([env.batch([upd(1, pos(150), "zombie")], offset=0)])
    assert env.names() == {2: "n"}
    # The delete itself redelivered: still a no-op.
    env.target.apply([env.batch([dele(1, pos(200))], offset=1)])
    assert env.names() == {2: "n"}
    # A genuinely newer insert of the same key brings it back.
    env.target.apply([env.batch([ins(1, pos(300), "reborn")], offset=2)])
    assert env.names() == {1: "reborn", 2: "n"}
    # An older delete redelivered now does not remove the newer row.
    env.target.apply([env.batch([dele(1, pos(200))], offset=1)])
    assert env.names() == {1: "reborn", 2: "n"}


def test_a_large_batch_is_written_value_for_value_and_versioned(env: Env) -> None:
    # Large enough for PostgreSQL's COPY-into-staging path (sinks/sql_copy.py); the other
    # dialects take the multi-row INSERT, and every dialect must end with the same rows.
    n = sql_copy.MIN_ROWS * 3
    odd = {"name": "tab\tnew\nline\\ back\x00nul", "doc": '{"q": "\\"quoted\\""}'}
    nulls = {c: None for c in ("name", "price", "at", "dur", "doc", "data")}
    rows = [order(i, f"r{i}") for i in range(n)]
    rows[3].update(odd)
    rows[4].update(nulls)
    env.target.apply(
        [
            env.batch(
                [change("r", {"id": r["id"]}, r, pos(100, i)) for i, r in enumerate(rows)], offset=0
            )
        ]
    )
    env.target.apply([env.batch([dele(5, pos(200))], offset=1)])
    got = env.rows()
    assert len(got) == n - 1 and 5 not in got
    nul = "\ufffd" if env.target.dialect == "postgresql" else "\x00"
    assert got[3]["name"] == "tab\tnew\nline\\ back" + nul + "nul"
    assert got[3]["doc"] == {"q": '"quoted"'}
    assert [got[4][c] for c in nulls] == [None] * len(nulls)
    r = got[7]
    assert (r["name"], r["price"], r["at"], r["dur"], r["doc"], r["data"]) == (
        "r7",
        decimal.Decimal("19.50"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        -dt.timedelta(hours=838, minutes=59, seconds=59),
        {"tags": ["a", "b"], "n": 1},
        b"\x00\xffbytes",
    )
    assert r[POS_COLUMN] == pos(100, 7)
    # Replayed older versions change nothing, the deleted row stays deleted, newer ones win.
    older = [change("u", {"id": i}, order(i, "old"), pos(50, i)) for i in range(n)]
    env.target.apply([env.batch(older, offset=0)])
    assert env.rows() == got
    newer = [change("u", {"id": i}, order(i, "new"), pos(300, i)) for i in range(n)]
    env.target.apply([env.batch(newer, offset=2)])
    assert set(env.names().values()) == {"new"} and len(env.names()) == n


def test_delete_of_a_row_never_seen_leaves_a_tombstone(env: Env) -> None:
    env.target.apply([env.batch([dele(7, pos(200))])])
    env.target.apply([env.batch([ins(7, pos(100), "late")])])
    assert env.names() == {}


def test_within_one_batch_the_latest_position_per_key_wins(env: Env) -> None:
    events = [
        upd(1, pos(300), "newest"),
        ins(1, pos(100), "first"),
        upd(1, pos(200), "middle"),
        ins(2, pos(110), "two"),
        dele(2, pos(400)),
        ins(2, pos(120), "two again"),
        ins(3, pos(130), "three"),
        dele(3, pos(125)),
    ]
    env.target.apply([env.batch(events)])
    assert env.names() == {1: "newest", 3: "three"}
    # The delete of key 2 was the latest change: it left a tombstone.
    env.target.apply([env.batch([ins(2, pos(399), "older than delete")])])
    assert env.names() == {1: "newest", 3: "three"}


def test_across_batches_of_one_apply_the_latest_position_wins(env: Env) -> None:
    b1 = env.batch([upd(1, pos(300), "from b1")], offset=10)
    b2 = env.batch([upd(1, pos(200), "from b2"), ins(2, pos(210), "two")], offset=11)
    env.target.apply([b1, b2])
    assert env.names() == {1: "from b1", 2: "two"}


def test_progress_holds_the_highest_offset_per_topic_partition(env: Env) -> None:
    t = env.target
    other = "sluice.shop.other"
    t.apply(
        [
            env.batch([ins(1, pos(100))], offset=5, partition=0),
            env.batch([ins(2, pos(90))], offset=3, partition=0),
            env.batch([ins(3, pos(110))], offset=7, partition=1),
            env.batch([ins(4, pos(120))], offset=2, partition=0, topic=other),
        ]
    )
    assert t.stored_progress() == {(TOPIC, 0): 5, (TOPIC, 1): 7, (other, 0): 2}
    t.apply([env.batch([ins(5, pos(130))], offset=6, partition=0)])
    assert t.stored_progress() == {(TOPIC, 0): 6, (TOPIC, 1): 7, (other, 0): 2}
    # The stored position is the newest change of the batch at that offset.
    prog = t.progress
    with t.engine.connect() as conn:
        stored = conn.execute(
            sa.select(prog.c[POS_COLUMN]).where(
                prog.c.sink == t.config.name, prog.c.topic == TOPIC, prog.c.partition == 1
            )
        ).scalar_one()
    assert stored == pos(110)


def test_progress_of_another_sink_is_separate(env: Env, unique: str) -> None:
    env.target.apply([env.batch([ins(1, pos(100))], offset=9)])
    other = SqlTarget(
        SqlSink(
            name=f"other_{unique}",
            url=env.target.config.url,
            source="s",
            table_name="{table}_o" + unique,
        )
    )
    try:
        assert other.stored_progress() == {}
        other.apply([env.batch([ins(1, pos(100))], offset=2)])
        assert other.stored_progress() == {(TOPIC, 0): 2}
    finally:
        other.close()
    assert env.target.stored_progress() == {(TOPIC, 0): 9}


def test_progress_is_recorded_for_tables_the_sink_does_not_want(
    env: Env, tmp_path: Path, unique: str
) -> None:
    config = env.target.config.model_copy(
        update={"name": f"f_{unique}", "tables": TableFilter(exclude=("shop.orders",))}
    )
    filtered = SqlTarget(config)
    try:
        assert not filtered.wants("shop", "orders")
        assert filtered.apply([env.batch([ins(1, pos(100))], offset=4)]) == 0
        assert filtered.stored_progress() == {(TOPIC, 0): 4}
        assert env.table_name() not in sa.inspect(filtered.engine).get_table_names()
    finally:
        filtered.close()


def test_rows_and_progress_are_one_transaction(env: Env) -> None:
    env.target.apply([env.batch([ins(9, pos(10))], offset=0)])
    good = env.batch([ins(1, pos(100)), ins(2, pos(101))], offset=1)
    bad_line = change(
        "c",
        {"order_id": None, "line_no": 1},
        {"order_id": None, "line_no": 1, "qty": 1},
        pos(102),
        LINES,
    )
    bad = env.batch([bad_line], offset=2, schema=LINES, topic="sluice.shop.lines")
    with pytest.raises(sa_exc.IntegrityError):
        env.target.apply([good, bad])
    assert env.names() == {9: "n"}
    assert env.target.stored_progress() == {(TOPIC, 0): 0}


def test_target_table_is_created_with_the_primary_key(env: Env) -> None:
    env.target.apply([env.batch([ins(1, pos(100))])])
    key = {"order_id": 1, "line_no": 2}
    line = change("c", key, {**key, "qty": 3}, pos(1), LINES)
    env.target.apply([env.batch([line], schema=LINES, topic="sluice.shop.lines")])
    insp = sa.inspect(env.target.engine)
    assert insp.get_pk_constraint(env.table_name())["constrained_columns"] == ["id"]
    assert insp.get_pk_constraint(env.table_name(LINES))["constrained_columns"] == [
        "order_id",
        "line_no",
    ]
    cols = {c["name"] for c in insp.get_columns(env.table_name())}
    assert cols == {*ORDERS.column_names, POS_COLUMN}
    assert env.rows(LINES) == {(1, 2): {"order_id": 1, "line_no": 2, "qty": 3, POS_COLUMN: pos(1)}}


def test_composite_key_versioning_and_delete(env: Env) -> None:
    def line(op: str, o: int, n: int, qty: int | None, at: str) -> dict[str, Any]:
        after = None if op == "d" else {"order_id": o, "line_no": n, "qty": qty}
        return change(op, {"order_id": o, "line_no": n}, after, at, LINES)

    batch = [line("c", 1, 1, 5, pos(10)), line("c", 1, 2, 6, pos(11)), line("c", 2, 1, 7, pos(12))]
    env.target.apply([env.batch(batch, schema=LINES)])
    env.target.apply([env.batch([line("d", 1, 2, None, pos(20))], schema=LINES)])
    env.target.apply([env.batch([line("u", 1, 2, 99, pos(15))], schema=LINES)])
    env.target.apply([env.batch([line("u", 1, 1, 50, pos(21))], schema=LINES)])
    assert {k: r["qty"] for k, r in env.rows(LINES).items()} == {(1, 1): 50, (2, 1): 7}


def test_a_column_added_at_the_source_is_added_to_the_target(env: Env) -> None:
    env.target.apply([env.batch([ins(1, pos(100))])])
    wider = TableSchema(
        ORDERS.database,
        ORDERS.table,
        (*ORDERS.columns, Column("note", "varchar", "varchar(50)")),
        ORDERS.primary_key,
    )
    event = change("u", {"id": 1}, order(1, "m", note="added"), pos(200), schema=wider)
    env.target.apply([env.batch([event], offset=1, schema=wider)])
    rows = env.rows(wider)
    assert rows[1]["note"] == "added"
    assert rows[1]["name"] == "m"


def test_a_tombstones_table_of_the_earlier_layout_is_rewritten(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE _sluice_tombstones (table_name VARCHAR(200), row_key VARCHAR(700), "
                "_sluice_pos VARCHAR(40) NOT NULL, PRIMARY KEY (table_name, row_key))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO _sluice_tombstones VALUES ('orders', '[7]', :p)"), {"p": pos(200)}
        )
    engine.dispose()
    target = SqlTarget(SqlSink(name="old", url=url, source="s"))
    try:
        env = Env(target, "")
        target.apply([env.batch([ins(7, pos(100), "late"), ins(8, pos(100), "eight")])])
        with target.engine.connect() as conn:
            names = conn.execute(sa.text("SELECT id, name FROM orders")).all()
        assert [tuple(r) for r in names] == [(8, "eight")]
        cols = {c["name"] for c in sa.inspect(target.engine).get_columns("_sluice_tombstones")}
        assert cols == {"table_name", "key_hash", "row_key", POS_COLUMN}
    finally:
        target.close()
