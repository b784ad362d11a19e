"""Schema evolution logic without services: table-map types, DDL statements, the schema
history, where a source job puts schema-change records, and which target changes are safe.

The table-map mapping is checked against information_schema on a real server in
tests/integration/test_schema_changes.py; here are the cases a MariaDB server cannot produce
(MySQL 8 flavour, native JSON) and the pure rules around it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from pymysqlreplication.constants import FIELD_TYPE
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.pipeline import BinlogSource, TableFilter
from app.settings import Settings
from sinks.sql_migrate import plan, shape_of
from sources.binlog import RowChange, SourceTransaction, Statement
from sources.ddl import TableChange, dropped_database, parse_ddl
from sources.job import SourceJob
from sources.position import BinlogPosition
from sources.progress import JobProgress
from sources.schema import Column, TableSchema
from sources.schema_changes import partition_keys
from sources.schema_history import SchemaHistory, refine, shape
from sources.table_map import column_type, quote_member, table_map_schema
from sources.writer import partition_for

# --------------------------------------------------------------------------- table map


def col(type_: int, **kw: Any) -> SimpleNamespace:
    return SimpleNamespace(type=type_, **kw)


def test_mysql_8_types_have_no_display_width() -> None:
    assert column_type(col(FIELD_TYPE.LONG, unsigned=True), mariadb=False) == (
        "int",
        "int unsigned",
    )
    assert column_type(col(FIELD_TYPE.LONGLONG), mariadb=False) == ("bigint", "bigint")
    assert column_type(col(FIELD_TYPE.YEAR, unsigned=True), mariadb=False) == ("year", "year")
    assert column_type(col(FIELD_TYPE.LONG), mariadb=True) == ("int", "int(11)")
    assert column_type(col(FIELD_TYPE.YEAR, unsigned=True), mariadb=True) == ("year", "year(4)")


def test_mysql_json_has_its_own_type_and_mariadb_json_is_longtext() -> None:
    assert column_type(col(FIELD_TYPE.JSON, length_size=4), mariadb=False) == ("json", "json")
    longtext = col(FIELD_TYPE.BLOB, length_size=4, collation_name="utf8mb4_bin")
    assert column_type(longtext, mariadb=True) == ("longtext", "longtext")


def test_string_lengths_are_characters_not_bytes() -> None:
    varchar = col(FIELD_TYPE.VARCHAR, max_length=200, collation_name="utf8mb4_general_ci")
    assert column_type(varchar, True) == ("varchar", "varchar(50)")
    ucs2 = col(FIELD_TYPE.STRING, max_length=20, collation_name="ucs2_general_ci")
    assert column_type(ucs2, True) == ("char", "char(10)")
    binary = col(FIELD_TYPE.STRING, max_length=16, collation_name="binary")
    assert column_type(binary, True) == ("binary", "binary(16)")
    unknown_charset = col(FIELD_TYPE.VARCHAR, max_length=10, collation_name=None)
    assert column_type(unknown_charset, True) is None


def test_enum_members_are_quoted_as_information_schema_quotes_them() -> None:
    assert quote_member("it's a\\b") == "'it''s a\\\\b'"
    enum = col(FIELD_TYPE.ENUM, enum_values=["", "a", "b'c"])
    assert column_type(enum, True) == ("enum", "enum('a','b''c')")


def test_a_table_map_without_column_names_gives_no_schema() -> None:
    event = SimpleNamespace(
        schema="d", table="t", columns=[col(FIELD_TYPE.LONG, name=None)],
        optional_metadata=SimpleNamespace(), null_bitmask=b"\x01", dbms="mariadb",
    )  # fmt: skip
    assert table_map_schema(event) is None


def test_an_unknown_type_is_described_as_unknown_and_the_history_names_it() -> None:
    event = SimpleNamespace(
        schema="d", table="t", dbms="mariadb", null_bitmask=b"\x02",
        columns=[col(FIELD_TYPE.LONG, name="id"), col(FIELD_TYPE.NULL, name="x")],
        optional_metadata=SimpleNamespace(
            simple_primary_key_list=[], primary_keys_with_prefix={0: 10}
        ),
    )  # fmt: skip
    derived = table_map_schema(event)
    assert derived is not None
    assert derived.columns[1] == Column("x", "unknown", "unknown(6)", True)
    assert derived.columns[0].nullable is False
    assert derived.primary_key == ("id",)  # from the prefix-key list
    known = TableSchema("d", "t", (Column("id", "int", "int(11)"), Column("x", "uuid", "uuid")), ())
    assert refine(derived, known).columns[1] == Column("x", "uuid", "uuid", True)


# --------------------------------------------------------------------------- history


def test_shape_drops_only_what_a_table_map_cannot_carry() -> None:
    assert shape("int(5) unsigned zerofill") == "int unsigned"
    assert shape("float(7,3)") == "float"
    assert shape("year(4)") == "year"
    assert shape("varchar(5)") == "varchar(5)"
    assert shape("decimal(12,2)") == "decimal(12,2)"


def test_the_history_answers_by_position() -> None:
    h = SchemaHistory()
    v1 = TableSchema("d", "t", (Column("a", "int", "int(11)"),), ())
    v2 = TableSchema("d", "t", (Column("a", "int", "int(11)"), Column("b", "int", "int(11)")), ())
    h.seed({("d", "t"): v1})
    h.record("d", "t", "0005", v2)
    h.record("d", "t", "0009", None)
    assert h.at("d", "t", "0001") == v1
    assert h.at("d", "t", "0005") == v2
    assert h.at("d", "t", "0008") == v2
    assert h.at("d", "t", "0010") is None
    assert h.latest("d", "t") is None
    assert h.tables() == []
    h.forget_before("0006")
    assert h.at("d", "t", "0006") == v2
    h.forget_before("0010")
    assert h.at("d", "t", "0010") is None and h.tables() == []


# --------------------------------------------------------------------------- statements


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("ALTER TABLE t ADD COLUMN c INT", [TableChange("alter", "db", "t")]),
        (
            "alter table `x`.`t` change `a` b int comment 'a, b', rename column c to d",
            [TableChange("alter", "x", "t", renamed_columns={"a": "b", "c": "d"})],
        ),
        (
            "ALTER TABLE t MODIFY c INT, RENAME TO u",
            [TableChange("alter", "db", "t"), TableChange("rename", "db", "t", "db", "u")],
        ),
        (
            "RENAME TABLE a TO b, x.c TO y.d",
            [
                TableChange("rename", "db", "a", "db", "b"),
                TableChange("rename", "x", "c", "y", "d"),
            ],
        ),
        ("TRUNCATE TABLE t", [TableChange("truncate", "db", "t")]),
        ("truncate t", [TableChange("truncate", "db", "t")]),
        (
            "DROP TABLE IF EXISTS `a`,`b` /* generated by server */",
            [TableChange("drop", "db", "a"), TableChange("drop", "db", "b")],
        ),
        ("CREATE TABLE IF NOT EXISTS `we``ird` (id int)", [TableChange("create", "db", "we`ird")]),
        ("CREATE OR REPLACE TABLE t (id int)", [TableChange("create", "db", "t")]),
        ("/* note */ CREATE INDEX ix ON t (c)", [TableChange("alter", "db", "t")]),
        ("DROP INDEX `PRIMARY` ON x.t", [TableChange("alter", "x", "t")]),
        ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", [TableChange("alter", "db", "t")]),
        ("CREATE TEMPORARY TABLE t (i int)", []),
        ("DROP TEMPORARY TABLE t", []),
        ("INSERT INTO t VALUES (1)", []),
        ("GRANT SELECT ON *.* TO x", []),
        ("ALTER TABLE t RENAME INDEX a TO b", [TableChange("alter", "db", "t")]),
    ],
)
def test_statements_name_the_tables_they_change(sql: str, expected: list[TableChange]) -> None:
    assert parse_ddl(sql, "db") == expected


def test_an_unqualified_name_without_a_session_database_names_nothing() -> None:
    assert parse_ddl("TRUNCATE t", None) == []
    assert dropped_database("DROP DATABASE IF EXISTS `shop`") == "shop"
    assert dropped_database("DROP TABLE shop") is None


# --------------------------------------------------------------------------- source job


def test_partition_keys_reach_every_partition() -> None:
    for n in (1, 3, 4, 12):
        keys = partition_keys(n)
        assert [partition_for(k, n) for k in keys] == list(range(n))


OLD = TableSchema("shop", "t", (Column("id", "int", "int(11)", False),), ("id",))
NEW = TableSchema(
    "shop", "t", (Column("id", "int", "int(11)", False), Column("c", "int", "int(11)")), ("id",)
)


class FakeWriter:
    """Records what a job adds and commits, with the partition each event lands in."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, dict[str, Any], list[str]]] = []
        self.commits: list[tuple[JobProgress, int]] = []
        self.pending_events = 0

    def add(self, topic: str, partitions: int, key: bytes, event: Any, head: bytes) -> None:
        schema = orjson.loads(head + b"]}")["schema"]
        names = [c[0] for c in schema["columns"]]
        self.events.append((topic, partition_for(key, partitions), event, names))
        self.pending_events += 1

    async def commit(self, progress: JobProgress) -> int:
        self.commits.append((progress, len(self.events)))
        sent, self.pending_events = self.pending_events, 0
        return sent

    def ops(self) -> list[tuple[str, int, str]]:
        return [(t.rsplit(".", 1)[-1], p, e["op"]) for t, p, e, _ in self.events]


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> SourceJob:
    source = BinlogSource(
        name="shop", url="mysql://root@127.0.0.1:1", server_id=7, topic_prefix="cdc",
        snapshot="never", tables=TableFilter(include=("shop.*",)),
    )  # type: ignore[arg-type]  # fmt: skip
    j = SourceJob(source, Settings(topic_partitions=3))
    now: dict[tuple[str, str], TableSchema | None] = {
        ("shop", "t"): NEW,
        ("shop", "u"): TableSchema("shop", "u", NEW.columns, NEW.primary_key),
    }

    async def no_topic(topic: str) -> None:
        return None

    async def describe(keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        return {k: now.get(k) for k in keys}

    monkeypatch.setattr(j, "_ensure_topic", no_topic)
    monkeypatch.setattr(j, "_describe_now", describe)
    return j


def txn(pos: int, *changes: RowChange | Statement) -> SourceTransaction:
    return SourceTransaction(BinlogPosition(1, pos, 0, "binlog.000001"), 0, list(changes))


def insert(i: int, schema: TableSchema = OLD, table: str = "t") -> RowChange:
    after = {c.name: i for c in schema.columns}
    return RowChange("shop", table, "c", None, after, schema)


def run(job: SourceJob, writer: FakeWriter, *txns: SourceTransaction) -> None:
    async def go() -> None:
        last = BinlogPosition(1, 4, 0, "binlog.000001")
        for t in txns:
            await job._add_transaction(writer, t, last)  # type: ignore[arg-type]
            last = t.position

    asyncio.run(go())


def test_a_schema_change_goes_to_every_partition_right_before_the_first_new_row(
    job: SourceJob,
) -> None:
    w = FakeWriter()
    alter = Statement("ALTER TABLE t ADD c INT", "shop")
    run(job, w, txn(100, insert(1)), txn(200, alter), txn(300, insert(2, NEW)))
    # Everything before the statement was committed first, at the position before it.
    assert [(p.position.pos if p.position else None, n) for p, n in w.commits] == [(100, 1)]
    schema_events = [e for e in w.events if e[2]["op"] == "s"]
    assert sorted(p for _, p, _, _ in schema_events) == [0, 1, 2]
    assert all(names == ["id", "c"] for *_, names in schema_events)
    s_event = schema_events[0][2]
    assert s_event["ddl"] == "ALTER TABLE t ADD c INT"
    assert s_event["key"] is s_event["before"] is s_event["after"] is None
    assert s_event["pos"] == BinlogPosition(1, 200, 0).key()
    assert [e[2]["op"] for e in w.events] == ["c", "s", "s", "s", "c"]
    assert w.events[-1][3] == ["id", "c"]


def test_an_alter_that_changes_nothing_visible_publishes_nothing(job: SourceJob) -> None:
    w = FakeWriter()
    index = Statement("CREATE INDEX ix ON t (id)", "shop")
    run(job, w, txn(100, insert(1)), txn(200, index), txn(300, insert(2)))
    assert [op for *_, op in w.ops()] == ["c", "c"]


def test_a_schema_change_without_rows_is_published_before_progress_passes_it(
    job: SourceJob,
) -> None:
    w = FakeWriter()
    run(job, w, txn(100, insert(1)), txn(200, Statement("ALTER TABLE t ADD c INT", "shop")))
    assert [op for *_, op in w.ops()] == ["c"]
    asyncio.run(job._publish_pending(w))  # type: ignore[arg-type]  # what a commit does first
    assert sorted(p for _, p, op in w.ops() if op == "s") == [0, 1, 2]
    assert w.events[-1][3] == ["id", "c"]  # information_schema's shape, now


def test_truncate_and_drop_reach_every_partition_and_drop_ends_tracking(job: SourceJob) -> None:
    w = FakeWriter()
    run(
        job,
        w,
        txn(100, insert(1)),
        txn(200, Statement("TRUNCATE t", "shop")),
        txn(300, Statement("DROP TABLE t", "shop")),
        txn(400, Statement("DROP TABLE elsewhere.x", "shop")),
    )
    assert [op for *_, op in w.ops()] == ["c", "t", "t", "t", "s", "s", "s"]
    drops = [e for _, _, e, _ in w.events if e["op"] == "s"]
    assert all(e["dropped"] is True for e in drops)
    assert ("shop", "t") not in job._tables
    assert job._history.at("shop", "t", BinlogPosition(1, 300, 0).key()) is None


def test_a_renamed_table_ends_its_old_topic_and_starts_a_new_one(job: SourceJob) -> None:
    w = FakeWriter()
    run(job, w, txn(100, insert(1)), txn(200, Statement("RENAME TABLE t TO u", "shop")))
    (old,) = {e["renamed_to"] for t, _, e, _ in w.events if t == "cdc.shop.t" and e["op"] == "s"}
    (new,) = {e["renamed_from"] for t, _, e, _ in w.events if t == "cdc.shop.u"}
    assert (old, new) == ("shop.u", "shop.t")
    assert sorted(p for t, p, _, _ in w.events if t == "cdc.shop.u") == [0, 1, 2]
    run(job, w, txn(300, insert(2, TableSchema("shop", "u", NEW.columns, ("id",)), "u")))
    assert w.events[-1][0] == "cdc.shop.u" and w.events[-1][2]["op"] == "c"


def test_renamed_columns_travel_with_the_schema_change(job: SourceJob) -> None:
    w = FakeWriter()
    renamed = TableSchema("shop", "t", (OLD.columns[0], Column("d", "int", "int(11)")), ("id",))
    run(
        job,
        w,
        txn(100, insert(1, NEW)),
        txn(200, Statement("ALTER TABLE t RENAME COLUMN c TO d", "shop")),
        txn(300, insert(2, renamed)),
    )
    (change,) = {orjson.dumps(e).decode() for _, _, e, _ in w.events if e["op"] == "s"}
    assert orjson.loads(change)["renamed_columns"] == {"c": "d"}


# --------------------------------------------------------------------------- target changes


PG, MY, LITE = postgresql.dialect(), mysql.dialect(), sqlite.dialect()


def test_compiled_types_have_a_shape() -> None:
    assert shape_of("VARCHAR(100) COLLATE utf8mb4_bin", "mysql").size == 100
    assert shape_of("INTEGER(11)", "mysql").size == 32
    assert shape_of("INTEGER UNSIGNED", "mysql").size == 33
    assert shape_of("NUMERIC(12, 2)", "postgresql").scale == 2
    assert shape_of("NUMERIC", "postgresql").size is None
    assert shape_of("FLOAT", "postgresql").size == 64  # PostgreSQL FLOAT is double precision
    assert shape_of("TIMESTAMP WITHOUT TIME ZONE", "postgresql").family == "datetime"
    assert shape_of("LONGTEXT", "mysql").family == "string"


def c(name: str, column_type: str) -> Column:
    return Column(name, column_type.split("(")[0].split(" ")[0], column_type)


@pytest.mark.parametrize(
    ("target", "source", "verdict"),
    [
        (sa.Integer(), "bigint(20)", "widen"),
        (sa.BigInteger(), "int(11)", "keep"),
        (sa.BigInteger(), "bigint(20) unsigned", "widen"),
        (sa.String(50), "varchar(100)", "widen"),
        (sa.String(100), "varchar(50)", "keep"),
        (sa.String(100), "enum('a','b')", "widen"),
        (sa.Text(), "varchar(100)", "keep"),
        (sa.Numeric(10, 2), "decimal(12,4)", "widen"),
        (sa.Numeric(12, 4), "decimal(10,2)", "keep"),
        (sa.Integer(), "decimal(12,2)", "widen"),
        (sa.Numeric(12, 2), "int(11)", "keep"),
        (sa.REAL(), "double", "widen"),
        (sa.Float(), "double", "keep"),  # PostgreSQL FLOAT is already double precision
        (sa.Date(), "datetime(6)", "widen"),
        (sa.DateTime(), "date", "keep"),
        (sa.Integer(), "varchar(10)", "unsafe"),
        (sa.String(10), "int(11)", "unsafe"),
        (sa.Integer(), "double", "unsafe"),
        (sa.Date(), "time", "unsafe"),
    ],
)
def test_what_may_change_on_postgresql(target: Any, source: str, verdict: str) -> None:
    p = plan({"x": target}, [c("x", source)], PG)
    found = "unsafe" if p.unsafe else "widen" if p.widen else "keep"
    assert found == verdict, p.describe()


def test_a_wider_decimal_has_room_for_both_shapes() -> None:
    p = plan({"x": sa.Numeric(10, 2)}, [c("x", "decimal(12,4)")], PG)
    assert [w.column_type for w, _ in p.widen] == ["decimal(12,4)"]
    p = plan({"x": sa.Numeric(10, 4)}, [c("x", "decimal(10,0)")], PG)
    assert [w.column_type for w, _ in p.widen] == ["decimal(14,4)"]
    p = plan({"x": sa.Integer()}, [c("x", "decimal(5,2)")], PG)
    assert [w.column_type for w, _ in p.widen] == ["decimal(12,2)"]  # 10 digits of int, 2 scale


def test_a_missing_column_is_added_and_json_into_text_is_kept_as_text() -> None:
    p = plan({"x": sa.Text()}, [c("x", "json"), c("y", "int(11)")], MY)
    assert [a.name for a in p.add] == ["y"]
    assert p.write["x"].data_type == "longtext" and not p.unsafe
    assert not plan({"x": sa.DateTime()}, [c("x", "time")], LITE).unsafe  # both DATETIME there
