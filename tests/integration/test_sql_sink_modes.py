"""SqlTarget's mode append and its mirror of tables without a primary key, against real
PostgreSQL, SQLite and MariaDB (sinks/sql_append.py, sinks/sql_keyless.py). Nothing is mocked."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.pipeline import SqlSink
from sinks.sql import IncomingBatch, SqlTarget
from sources.schema import Column, TableSchema
from tests.integration.test_sql_target import (
    ORDERS,
    TOPIC,
    change,
    dele,
    ins,
    mariadb_database,
    order,
    pos,
    upd,
)

pytestmark = pytest.mark.integration

LOG = TableSchema(
    "shop",
    "log",
    (Column("msg", "varchar", "varchar(50)"), Column("n", "int", "int(11)")),
    (),
)
LOG_TOPIC = "sluice.shop.log"

MakeTarget = Callable[..., SqlTarget]


@pytest.fixture(params=["postgresql", "sqlite", "mariadb"])
def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> Iterator[MakeTarget]:
    """SqlTargets of one target database, each with the given SqlSink settings."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url: str = request.getfixturevalue("pg_url")
        elif request.param == "mariadb":
            url = stack.enter_context(
                mariadb_database(request.getfixturevalue("mariadb"), f"tgt_{unique}")
            )
        else:
            url = f"sqlite:///{tmp_path / 'target.db'}"

        def make(**settings: Any) -> SqlTarget:
            settings.setdefault("table_name", "{table}_" + unique)
            target = SqlTarget(SqlSink(name=f"sink_{unique}", url=url, source="s", **settings))
            stack.callback(target.close)
            return target

        yield make


def batch(
    events: list[dict[str, Any]], offset: int, schema: TableSchema = ORDERS, topic: str = TOPIC
) -> IncomingBatch:
    return IncomingBatch(topic, 0, offset, schema.database, schema.table, schema, events)


def select(target: SqlTarget, schema: TableSchema, *columns: str) -> list[tuple[Any, ...]]:
    name = target.target_name(schema.database, schema.table)
    table = sa.Table(name, sa.MetaData(), autoload_with=target.engine)
    with target.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*[table.c[c] for c in columns]))]


# mode append


def test_append_writes_one_row_per_change_with_op_position_and_time(
    make_target: MakeTarget,
) -> None:
    target = make_target(mode="append", table_name="{table}_changes_x")
    at = change("c", {"id": 1}, order(1, "one"), pos(100))
    at["source"] = {"ts_ms": 1718000000000}
    target.apply([batch([at, ins(2, pos(101)), upd(1, pos(102), "uno")], 0)])
    target.apply([batch([dele(2, pos(103)), ins(3, pos(104), "snap", op="r")], 1)])
    rows = select(target, ORDERS, "_sluice_pos", "_sluice_op", "id", "name", "_sluice_ts")
    assert sorted(rows) == [
        (pos(100), "c", 1, "one", dt.datetime(2024, 6, 10, 6, 13, 20)),
        (pos(101), "c", 2, "n", None),
        (pos(102), "u", 1, "uno", None),
        (pos(103), "d", 2, "n", None),  # the before image
        (pos(104), "r", 3, "snap", None),
    ]


def test_append_redelivery_inserts_nothing(make_target: MakeTarget) -> None:
    target = make_target(mode="append")
    first = batch([ins(1, pos(100)), upd(1, pos(101), "b")], 0)
    second = batch([dele(1, pos(102))], 1)
    target.apply([first, second])
    target.apply([first])
    target.apply([second, first])
    rows = select(target, ORDERS, "_sluice_pos", "_sluice_op")
    assert Counter(rows) == Counter([(pos(100), "c"), (pos(101), "u"), (pos(102), "d")])


def test_append_keeps_a_key_change_and_identical_snapshot_rows(make_target: MakeTarget) -> None:
    target = make_target(mode="append")
    # An update of the key: a d under the old key and a c under the new one, at one position.
    moved = [
        change("d", {"id": 1}, None, pos(200), before=order(1)),
        change("c", {"id": 9}, order(9), pos(200)),
    ]
    same = change("r", {"msg": "x", "n": 1}, {"msg": "x", "n": 1}, pos(50), LOG)
    target.apply([batch(moved, 0), batch([same, same, same], 0, LOG, LOG_TOPIC)])
    target.apply([batch(moved, 0), batch([same, same, same], 0, LOG, LOG_TOPIC)])
    assert sorted(select(target, ORDERS, "_sluice_op", "id")) == [("c", 9), ("d", 1)]
    assert select(target, LOG, "_sluice_op", "msg") == [("r", "x")] * 3


def test_append_truncate_is_a_row_and_deletes_nothing(make_target: MakeTarget) -> None:
    target = make_target(mode="append")
    truncate = {"op": "t", "key": None, "before": None, "after": None, "pos": pos(300)}
    target.apply([batch([ins(1, pos(100))], 0), batch([truncate], 1)])
    # Every partition carries the truncate: one row all the same.
    target.apply([IncomingBatch(TOPIC, 1, 0, "shop", "orders", ORDERS, [truncate])])
    rows = select(target, ORDERS, "_sluice_op", "_sluice_pos", "id")
    assert sorted(rows) == [("c", pos(100), 1), ("t", pos(300), None)]


def test_append_adds_a_column_added_at_the_source(make_target: MakeTarget) -> None:
    target = make_target(mode="append")
    target.apply([batch([ins(1, pos(100))], 0)])
    wider = TableSchema(
        "shop", "orders", (*ORDERS.columns, Column("note", "varchar", "varchar(20)")), ("id",)
    )
    schema_change = {
        "op": "s", "key": None, "before": None, "after": None, "pos": pos(150),
        "ddl": "ALTER TABLE orders ADD note varchar(20)",
    }  # fmt: skip
    event = change("u", {"id": 1}, order(1, note="hi"), pos(200), schema=wider)
    target.apply([batch([schema_change, event], 1, wider)])
    assert sorted(select(target, wider, "_sluice_op", "note")) == [("c", None), ("u", "hi")]


# tables without a primary key, mode upsert


def log_event(op: str, msg: str, n: int, at: str) -> dict[str, Any]:
    row = {"msg": msg, "n": n}
    if op == "d":
        return change("d", row, None, at, LOG, before=row)
    return change(op, row, row, at, LOG)


def log_rows(target: SqlTarget) -> Counter[tuple[Any, ...]]:
    return Counter(select(target, LOG, "msg", "n"))


def test_a_table_without_primary_key_mirrors_the_multiset_of_rows(make_target: MakeTarget) -> None:
    target = make_target()
    history = [
        batch([log_event("c", "x", 1, pos(100, 0)), log_event("c", "x", 1, pos(100, 1))], 0, LOG),
        batch([log_event("c", "x", 1, pos(101)), log_event("c", "y", 2, pos(102))], 1, LOG),
        batch([log_event("d", "x", 1, pos(200))], 2, LOG),
    ]
    for b in history:
        target.apply([b])
    assert log_rows(target) == Counter({("x", 1): 2, ("y", 2): 1})
    # An update of one copy: the old row deleted, the new one inserted, at one position.
    target.apply(
        [batch([log_event("d", "x", 1, pos(300)), log_event("c", "x", 5, pos(300))], 3, LOG)]
    )
    expected = Counter({("x", 1): 1, ("x", 5): 1, ("y", 2): 1})
    assert log_rows(target) == expected
    # Replaying the whole change sequence, one by one or at once, changes nothing.
    for b in history:
        target.apply([b])
    target.apply(history)
    assert log_rows(target) == expected


def test_identical_snapshot_rows_are_counted_and_a_new_snapshot_does_not_double_them(
    make_target: MakeTarget,
) -> None:
    target = make_target()
    snap = batch([log_event("r", "x", 1, pos(50))] * 3, 0, LOG)
    target.apply([snap])
    target.apply([snap])
    assert log_rows(target) == Counter({("x", 1): 3})
    # The table read again later (resumed snapshot): the count is the new snapshot's.
    target.apply([batch([log_event("r", "x", 1, pos(80))] * 2, 1, LOG)])
    assert log_rows(target) == Counter({("x", 1): 2})
    # Changes older than that snapshot, replayed by the stream, are no-ops.
    target.apply([batch([log_event("c", "x", 1, pos(60))], 2, LOG)])
    assert log_rows(target) == Counter({("x", 1): 2})


def test_a_truncate_empties_a_table_without_primary_key(make_target: MakeTarget) -> None:
    target = make_target()
    truncate = {"op": "t", "key": None, "before": None, "after": None, "pos": pos(300)}
    target.apply(
        [batch([log_event("c", "x", 1, pos(100)), log_event("c", "x", 1, pos(101))], 0, LOG)]
    )
    target.apply([batch([truncate], 1, LOG)])
    target.apply([batch([log_event("c", "x", 1, pos(101))], 0, LOG)])  # older: stays out
    assert log_rows(target) == Counter()
    target.apply([batch([log_event("c", "x", 1, pos(400))], 2, LOG)])
    assert log_rows(target) == Counter({("x", 1): 1})


def test_a_progress_table_of_an_earlier_build_gets_the_anchor_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE _sluice_progress (sink VARCHAR(100), topic VARCHAR(250), "
                'partition INTEGER, "offset" BIGINT NOT NULL, _sluice_pos VARCHAR(40), '
                "updated_at DATETIME, PRIMARY KEY (sink, topic, partition))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO _sluice_progress VALUES ('old', :t, 0, 7, :p, NULL)"),
            {"t": TOPIC, "p": pos(1)},
        )
    engine.dispose()
    target = SqlTarget(SqlSink(name="old", url=url, source="s", consistency="exactly_once"))
    try:
        assert target.stored_anchor(TOPIC, 0) == (7, None)
        target.apply(
            [IncomingBatch(TOPIC, 0, 8, "shop", "orders", ORDERS, [ins(1, pos(2))], "a" * 64)]
        )
        assert target.stored_anchor(TOPIC, 0) == (8, "a" * 64)
    finally:
        target.close()
