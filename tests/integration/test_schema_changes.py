"""Schema per row event, schema-change and truncate records, on real servers.

Source side, on the private MariaDB with a FULL-metadata binlog: the schema derived from each
row's table map equals information_schema's for every supported type; a row written before an
ALTER keeps its own shape when read after it (a lagging reader); a DDL statement inside a
transaction stays in it. Sink side, on PostgreSQL, SQLite and MariaDB: op "s" (add a column,
widen a type, refuse what cannot be evolved, the freeze and discard policies, renamed columns,
dropped tables) and op "t" (truncate, and an older change redelivered later stays deleted).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from app.errors import PoisonRecord
from app.pipeline import SqlSink
from devstack.mariadb import PrivateMariaDB
from sinks.sql import POS_COLUMN, SqlTarget
from sources.binlog import BinlogReader, RowChange, SourceTransaction, Statement
from sources.binlog import connection_settings as binlog_settings
from sources.mysql import current_position
from sources.position import BinlogPosition
from sources.schema import Column, TableSchema, load_schema
from sources.schema_history import refine
from tests.integration.test_sql_target import Env, mariadb_database, pos

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- source side


def _execute(conn: pymysql.connections.Connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)


def read_binlog(
    db: PrivateMariaDB, start: BinlogPosition, database: str, until: int
) -> list[SourceTransaction]:
    """The source transactions of ``database`` from ``start``, once ``until`` of them came."""
    got: list[SourceTransaction] = []
    done = threading.Event()
    reader = BinlogReader(
        binlog_settings(db.host, db.port, db.user, db.password),
        server_id=4242,
        start=start,
        wants=lambda d, _t: d == database,
    )

    def emit(txn: SourceTransaction) -> None:
        ours = [
            c
            for c in txn.changes
            if (isinstance(c, RowChange) and c.database == database)
            or (isinstance(c, Statement) and database in (c.database or c.sql))
        ]
        if ours:
            got.append(txn)
        if len(got) >= until:
            done.set()
            reader.stop()

    thread = threading.Thread(target=reader.run, args=(emit,), daemon=True)
    thread.start()
    assert done.wait(30), f"only {len(got)} of {until} transactions read"
    thread.join(10)
    return got


def _rows(txns: list[SourceTransaction]) -> list[RowChange]:
    return [c for t in txns for c in t.changes if isinstance(c, RowChange)]


EVERY_TYPE = """
    a TINYINT, b TINYINT UNSIGNED NOT NULL, c SMALLINT, d SMALLINT UNSIGNED, e MEDIUMINT,
    f MEDIUMINT UNSIGNED, g INT, h INT UNSIGNED, i BIGINT, j BIGINT UNSIGNED NOT NULL,
    k DECIMAL(12,2), l DECIMAL(5,0) UNSIGNED, m VARCHAR(50), n VARCHAR(50) CHARACTER SET latin1,
    o CHAR(10), p CHAR(3) CHARACTER SET latin1, q TINYTEXT, r TEXT, s MEDIUMTEXT, t LONGTEXT,
    u TINYBLOB, v BLOB, w MEDIUMBLOB, x LONGBLOB, y BINARY(4), z VARBINARY(20), aa DATE,
    ab DATETIME, ac DATETIME(6), ad TIMESTAMP NULL, ae TIMESTAMP(3) NULL, af TIME, ag TIME(2),
    ah YEAR, ai ENUM('a','b''c','d e','f\\\\g'), aj SET('x','y','z'), ak JSON, al BIT(1),
    am BIT(13), an FLOAT, ao DOUBLE, aq VARCHAR(300) CHARACTER SET utf8mb3, ar CHAR(255),
    at1 VARCHAR(4000), au VARCHAR(10) CHARACTER SET ucs2, av DECIMAL(65,30),
    id INT NOT NULL, k2 VARCHAR(10) NOT NULL, PRIMARY KEY (k2, id)
"""


def test_the_table_map_gives_information_schemas_schema_for_every_type(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    start = current_position(source_conn)
    _execute(
        source_conn,
        f"CREATE TABLE `{unique}`.every ({EVERY_TYPE})",
        f"INSERT INTO `{unique}`.every (b, j, id, k2) VALUES (1, 2, 3, 'x')",
    )
    (row,) = _rows(read_binlog(mariadb, start, unique, until=2))
    expected = load_schema(source_conn, unique, "every")
    assert expected is not None and row.schema is not None
    # Column by column first, so a failure names the type.
    assert [c.to_json() for c in row.schema.columns] == [c.to_json() for c in expected.columns]
    assert row.schema == expected
    assert row.schema.primary_key == ("k2", "id")  # key order, not column order


def test_what_the_table_map_cannot_carry_comes_from_the_history(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    start = current_position(source_conn)
    _execute(
        source_conn,
        f"""CREATE TABLE `{unique}`.details (
            id INT(5) ZEROFILL PRIMARY KEY, f FLOAT(7,3), flag BOOL, g POINT,
            s SET('é','ü') CHARACTER SET latin1, e ENUM('à','b') CHARACTER SET latin1)""",
        f"INSERT INTO `{unique}`.details (id) VALUES (1)",
    )
    (row,) = _rows(read_binlog(mariadb, start, unique, until=2))
    known = load_schema(source_conn, unique, "details")
    assert row.schema is not None and known is not None
    derived = {c.name: c.column_type for c in row.schema.columns}
    assert derived == {
        "id": "int(10) unsigned",  # width and ZEROFILL are not in the binlog
        "f": "float",
        "flag": "tinyint(4)",
        "g": "point",  # MariaDB writes the geometry subtype
        "s": "set('','')",  # non-UTF-8 members are lost by pymysqlreplication
        "e": "enum('','b')",
    }
    assert refine(row.schema, known) == known
    # A history that disagrees on what the binlog does show lends nothing.
    wider = TableSchema(
        unique,
        "details",
        (Column("id", "bigint", "bigint(20)", False), *known.columns[1:]),
        known.primary_key,
    )
    assert refine(row.schema, wider).columns[0].column_type == "int(10) unsigned"


def test_rows_read_after_an_alter_keep_the_shape_they_were_written_in(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    """The reader lags: everything happened before it reads. Each row has its own shape."""
    t = f"`{unique}`.lagging"
    start = current_position(source_conn)
    _execute(
        source_conn,
        f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(10))",
        f"INSERT INTO {t} VALUES (1, 'old')",
        f"ALTER TABLE {t} ADD COLUMN w INT NOT NULL DEFAULT 0, MODIFY v VARCHAR(40)",
        f"INSERT INTO {t} VALUES (2, 'new', 7)",
        f"ALTER TABLE {t} RENAME COLUMN w TO w2",
        f"UPDATE {t} SET w2 = 8 WHERE id = 2",
        f"DELETE FROM {t} WHERE id = 1",
    )
    txns = read_binlog(mariadb, start, unique, until=7)
    first, second, third, fourth = _rows(txns)
    assert first.schema is not None and second.schema is not None and third.schema is not None
    assert [c.to_json() for c in first.schema.columns] == [
        ["id", "int", "int(11)", False],
        ["v", "varchar", "varchar(10)", True],
    ]
    assert [c.to_json() for c in second.schema.columns] == [
        ["id", "int", "int(11)", False],
        ["v", "varchar", "varchar(40)", True],
        ["w", "int", "int(11)", False],
    ]
    assert third.schema.column_names == ("id", "v", "w2")
    assert third.after == {"id": 2, "v": "new", "w2": 8}
    # An unchanged shape is the same object from one transaction to the next.
    assert fourth.schema is third.schema
    statements = [c.sql for t in txns for c in t.changes if isinstance(c, Statement)]
    assert [s.split()[0] for s in statements] == ["CREATE", "ALTER", "ALTER"]


def test_a_statement_inside_a_transaction_stays_in_it(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    start = current_position(source_conn)
    _execute(
        source_conn,
        f"CREATE TABLE `{unique}`.src (id INT PRIMARY KEY, v INT)",
        f"INSERT INTO `{unique}`.src VALUES (1, 10), (2, 20)",
        f"CREATE TABLE `{unique}`.copy (PRIMARY KEY (id)) AS SELECT * FROM `{unique}`.src",
        f"TRUNCATE `{unique}`.src",
    )
    create, insert, ctas, truncate = read_binlog(mariadb, start, unique, until=4)
    assert [type(c).__name__ for c in ctas.changes] == ["Statement", "RowChange", "RowChange"]
    assert isinstance(ctas.changes[0], Statement)
    assert ctas.changes[0].sql.startswith(f"CREATE TABLE `{unique}`.`copy`")
    assert [c.table for c in ctas.changes if isinstance(c, RowChange)] == ["copy", "copy"]
    assert create.position < insert.position < ctas.position < truncate.position
    assert [type(c).__name__ for c in truncate.changes] == ["Statement"]


# --------------------------------------------------------------------------- sink side


@pytest.fixture(name="env", params=["postgresql", "sqlite", "mariadb"])
def sink_env(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Env]:
    """A SqlTarget on each dialect (as in test_sql_target.py), tables suffixed ``_<unique>``."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url: str = request.getfixturevalue("pg_url")
        elif request.param == "mariadb":
            server = request.getfixturevalue("mariadb")
            url = stack.enter_context(mariadb_database(server, f"tgt_{unique}"))
        else:
            url = f"sqlite:///{tmp_path / 'target.db'}"
        sink = SqlSink(name=f"sink_{unique}", url=url, source="s", table_name="{table}_" + unique)
        target = SqlTarget(sink)
        stack.callback(target.close)
        yield Env(target, unique)


PEOPLE = TableSchema(
    "shop",
    "people",
    (
        Column("id", "int", "int(11)", False),
        Column("name", "varchar", "varchar(5)"),
        Column("n", "int", "int(11)"),
    ),
    ("id",),
)


def _schema(*columns: Column, pk: tuple[str, ...] = ("id",)) -> TableSchema:
    return TableSchema("shop", "people", (Column("id", "int", "int(11)", False), *columns), pk)


WIDER = _schema(
    Column("name", "varchar", "varchar(100)"),
    Column("n", "bigint", "bigint(20)"),
    Column("email", "varchar", "varchar(50)"),
)


def row(i: int, at: str, op: str = "c", schema: TableSchema = PEOPLE, **values: Any) -> dict:
    after = {c.name: values.get(c.name) for c in schema.columns}
    after["id"] = i
    return {"op": op, "key": {"id": i}, "before": None, "after": after, "pos": at}


def ddl(op: str, at: str, statement: str, **extra: Any) -> dict[str, Any]:
    return {
        "op": op,
        "key": None,
        "before": None,
        "after": None,
        "pos": at,
        "source": {},
        "ddl": statement,
        **extra,
    }


def batch(
    env: Env,
    events: list[dict[str, Any]],
    offset: int = 0,
    partition: int = 0,
    schema: TableSchema = PEOPLE,
) -> Any:
    return env.batch(events, offset, partition, schema=schema)


def every_partition(
    env: Env, event: dict[str, Any], schema: TableSchema, offset: int = 100, parts: int = 3
) -> list[Any]:
    return [batch(env, [event], offset, p, schema=schema) for p in range(parts)]


def people(env: Env, schema: TableSchema = PEOPLE) -> dict[int, dict[str, Any]]:
    """The target's rows as the driver gives them (SQLite: as stored, whatever the declared
    type, since SQLite keeps a column's declared type when the source widens it)."""
    name = env.target.engine.dialect.identifier_preparer.quote(env.table_name(schema))
    with env.target.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {name}")).mappings()
        return {r["id"]: dict(r) for r in rows}


def column_types(env: Env, schema: TableSchema = PEOPLE) -> dict[str, str]:
    inspector = sa.inspect(env.target.engine)
    return {
        c["name"]: re.sub(
            r"^(BIGINT|INTEGER)\(\d+\)",
            r"\1",
            str(c["type"].compile(dialect=env.target.engine.dialect)),
        ).split(" ")[0]
        for c in inspector.get_columns(env.table_name(schema))
    }


def test_a_schema_change_adds_columns_and_widens_types(env: Env) -> None:
    env.target.apply([batch(env, [row(1, pos(10), name="ann", n=1)], 0, 0, schema=PEOPLE)])
    alter = ddl("s", pos(20), "ALTER TABLE people MODIFY name VARCHAR(100), ADD email ...")
    env.target.apply(every_partition(env, alter, WIDER))
    types = column_types(env)
    assert "email" in types
    if env.target.dialect != "sqlite":  # SQLite's declared types need no widening
        assert types["name"] == "VARCHAR(100)"
        assert types["n"] == "BIGINT"
    # Old-shape rows of partitions that have not reached the change yet still apply.
    env.target.apply([batch(env, [row(2, pos(15), name="bob", n=2)], 1, 1, schema=PEOPLE)])
    big = 2**40
    env.target.apply(
        [
            batch(
                env,
                [row(3, pos(30), schema=WIDER, name="x" * 100, n=big, email="c@d")],
                2,
                0,
                schema=WIDER,
            )
        ]
    )
    rows = people(env)
    assert rows[1]["email"] is None and rows[2]["name"] == "bob"
    assert (rows[3]["name"], rows[3]["n"], rows[3]["email"]) == ("x" * 100, big, "c@d")
    # A narrower shape later changes nothing: the target keeps the wider types.
    narrower = _schema(Column("name", "varchar", "varchar(10)"), Column("n", "int", "int(11)"))
    env.target.apply(every_partition(env, ddl("s", pos(40), "ALTER … narrower"), narrower, 5))
    if env.target.dialect != "sqlite":
        assert column_types(env)["name"] == "VARCHAR(100)"


def test_old_and_new_shapes_in_one_call_each_write_their_own_columns(env: Env) -> None:
    """What the delivery agent does: one call takes messages of several partitions, some still
    in the old shape, some already past the schema change."""
    env.target.apply([batch(env, [row(1, pos(10), name="ann", n=1)], 0, 0)])
    alter = ddl("s", pos(20), "ALTER TABLE people ADD email ...")
    env.target.apply(
        [
            batch(env, [alter, row(2, pos(21), schema=WIDER, name="b", n=2, email="b@x")], 1, 0,
                  schema=WIDER),
            batch(env, [row(3, pos(15), name="c", n=3), row(1, pos(16), "u", name="a2", n=1)],
                  1, 1),
            batch(env, [alter, row(3, pos(22), "u", schema=WIDER, name="c2", n=3, email="c@x")],
                  2, 1, schema=WIDER),
        ]
    )  # fmt: skip
    got = {k: (r["name"], r["email"]) for k, r in people(env).items()}
    assert got == {1: ("a2", None), 2: ("b", "b@x"), 3: ("c2", "c@x")}


def test_int_to_decimal_and_date_to_datetime_widen(env: Env) -> None:
    start = _schema(Column("n", "int", "int(11)"), Column("d", "date", "date"))
    env.target.apply(
        [batch(env, [row(1, pos(10), schema=start, n=5, d="2024-01-02")], 0, schema=start)]
    )
    wide = _schema(Column("n", "decimal", "decimal(12,2)"), Column("d", "datetime", "datetime"))
    env.target.apply(every_partition(env, ddl("s", pos(20), "ALTER … decimal"), wide))
    env.target.apply(
        [
            batch(
                env,
                [row(2, pos(30), schema=wide, n="1234567890.25", d="2024-01-02T03:04:05")],
                1,
                schema=wide,
            )
        ]
    )
    rows = people(env, start)
    assert str(rows[2]["n"]) == "1234567890.25"
    assert str(rows[2]["d"]).startswith("2024-01-02")
    if env.target.dialect != "sqlite":
        assert column_types(env)["n"].startswith(("NUMERIC(12", "DECIMAL(12"))


def test_an_unsafe_change_is_refused_with_the_statement_and_the_reason(env: Env) -> None:
    env.target.apply([batch(env, [row(1, pos(10), name="ann", n=1)], 0, schema=PEOPLE)])
    retyped = _schema(Column("name", "varchar", "varchar(5)"), Column("n", "date", "date"))
    statement = "ALTER TABLE people MODIFY n DATE"
    change = ddl("s", pos(20), statement)
    with pytest.raises(PoisonRecord) as refused:
        env.target.apply([batch(env, [change], 1, 0, schema=retyped)])
    # Said once per statement, by partition 0's record; the others only log it.
    env.target.apply([batch(env, [change], 1, p, schema=retyped) for p in (1, 2)])
    msg = str(refused.value)
    assert statement in msg
    assert "column n" in msg and "cannot hold date" in msg
    assert "schema_changes: evolve" in msg
    # Rows of the new shape are refused too, naming the statement they follow.
    with pytest.raises(PoisonRecord, match="MODIFY n DATE"):
        env.target.apply(
            [batch(env, [row(2, pos(30), schema=retyped, n="2024-01-01")], 2, schema=retyped)]
        )
    # A new primary key cannot be evolved either.
    rekeyed = _schema(Column("name", "varchar", "varchar(5)"), pk=("id", "name"))
    with pytest.raises(PoisonRecord, match="primary key"):
        env.target.apply(
            [batch(env, [ddl("s", pos(40), "ALTER … PRIMARY KEY")], 3, schema=rekeyed)]
        )
    assert people(env)[1]["name"] == "ann"


@contextlib.contextmanager
def policy_target(env: Env, policy: str) -> Iterator[SqlTarget]:
    config = env.target.config
    sink = SqlSink(
        **{**config.model_dump(), "url": config.url.get_secret_value(), "schema_changes": policy}
    )
    target = SqlTarget(sink)
    try:
        yield target
    finally:
        target.close()


@pytest.mark.parametrize("policy", ["freeze", "discard"])
def test_freeze_and_discard_keep_the_target_as_it_is(env: Env, policy: str) -> None:
    with policy_target(env, policy) as target:
        assert target.policy == policy
        target.apply([batch(env, [row(1, pos(10), name="ann", n=1)], 0, schema=PEOPLE)])
        alter = [
            batch(env, [ddl("s", pos(20), "ALTER TABLE people ADD email")], 1, p, schema=WIDER)
            for p in range(2)
        ]
        if policy == "freeze":  # said once, by partition 0's record, as a dead letter
            with pytest.raises(PoisonRecord, match=r"kept as it is.*add email"):
                target.apply(alter[:1])
            target.apply(alter[1:])
        else:
            target.apply(alter)
        target.apply(
            [
                batch(
                    env,
                    [row(2, pos(30), schema=WIDER, name="bob", n=2, email="e")],
                    2,
                    schema=WIDER,
                )
            ]
        )
        assert "email" not in column_types(env)
        assert people(env)[2]["name"] == "bob"


def test_a_renamed_column_takes_the_old_columns_values(env: Env) -> None:
    env.target.apply(
        [batch(env, [row(1, pos(10), name="ann", n=1), row(2, pos(11), name="bob", n=2)], 0)]
    )
    renamed = _schema(Column("full_name", "varchar", "varchar(5)"), Column("n", "int", "int(11)"))
    change = ddl(
        "s",
        pos(20),
        "ALTER TABLE people RENAME COLUMN name TO full_name",
        renamed_columns={"name": "full_name"},
    )
    # Partition 0 reaches the change; partition 1 still sends an old-shape row, then its change.
    env.target.apply([batch(env, [change], 1, 0, schema=renamed)])
    env.target.apply([batch(env, [row(2, pos(15), name="bobby", n=2)], 2, 1)])
    env.target.apply([batch(env, [change], 3, 1, schema=renamed)])
    env.target.apply(
        [batch(env, [row(3, pos(30), schema=renamed, full_name="cy", n=3)], 4, schema=renamed)]
    )
    rows = people(env)
    assert {k: r["full_name"] for k, r in rows.items()} == {1: "ann", 2: "bobby", 3: "cy"}


def test_truncate_deletes_older_rows_and_an_older_redelivery_stays_deleted(env: Env) -> None:
    old = [row(1, pos(10), name="a"), row(2, pos(11), name="b"), row(3, pos(12), name="c")]
    env.target.apply([batch(env, old, 0)])
    env.target.apply([batch(env, [row(1, pos(30), op="u", name="after")], 1, 1)])
    truncate = ddl("t", pos(20), "TRUNCATE people")
    env.target.apply(every_partition(env, truncate, PEOPLE, offset=2))
    # Row 1 was written after the truncate (pos 30): it stays; 2 and 3 are gone.
    assert {k: r["name"] for k, r in people(env).items()} == {1: "after"}
    # Redelivery of everything older (a replay after a crash) brings nothing back...
    env.target.apply([batch(env, old, 0)])
    env.target.apply([batch(env, [row(2, pos(19), op="u", name="late")], 9, 2)])
    assert set(people(env)) == {1}
    # ...and newer rows go on as usual, also in the same call as the truncate.
    env.target.apply(
        [
            batch(env, [row(4, pos(40), name="d")], 10),
            *every_partition(env, truncate, PEOPLE, offset=11),
        ]
    )
    assert set(people(env)) == {1, 4}
    with env.target.engine.connect() as conn:
        t = env.target.tombstones
        tombs = conn.execute(
            sa.select(t.c.row_key, t.c[POS_COLUMN]).where(t.c.table_name == env.table_name(PEOPLE))
        ).all()
    assert tombs == [("*", pos(20))]


def test_a_dropped_table_is_emptied_and_a_new_one_fills_it_again(env: Env) -> None:
    env.target.apply([batch(env, [row(1, pos(10), name="a"), row(2, pos(11), name="b")], 0)])
    env.target.apply(
        every_partition(env, ddl("s", pos(20), "DROP TABLE people", dropped=True), PEOPLE)
    )
    assert people(env) == {}
    created = ddl("s", pos(30), "CREATE TABLE people (...)")
    env.target.apply([batch(env, [created, row(1, pos(31), name="new")], 5)])
    env.target.apply([batch(env, [row(2, pos(11), name="old")], 6)])  # a late old change
    assert {k: r["name"] for k, r in people(env).items()} == {1: "new"}
