"""The source server checks, positions, the consistent snapshot and schema loading, on real
MariaDB servers: the system one (binlog off) and the private one with a full ROW binlog."""

from __future__ import annotations

from collections.abc import Iterator

import pymysql
import pytest

from app.errors import SourceConfigError
from app.pipeline import TableFilter
from devstack.mariadb import PrivateMariaDB
from sources.mysql import (
    SourceAddress,
    check_position_available,
    current_position,
    oldest_binlog,
    preflight,
)
from sources.position import BinlogPosition
from sources.schema import SYSTEM_SCHEMAS, Column, TableSchema, load_schemas
from sources.snapshot import ConsistentSnapshot

pytestmark = pytest.mark.integration

SYSTEM_SERVER = SourceAddress("127.0.0.1", 3306, "root", "")


def _address(db: PrivateMariaDB) -> SourceAddress:
    return SourceAddress(db.host, db.port, db.user, db.password)


@pytest.fixture
def private(mariadb: PrivateMariaDB) -> Iterator[pymysql.connections.Connection]:
    conn = _address(mariadb).connect()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def database(private: pymysql.connections.Connection, unique: str) -> Iterator[str]:
    with private.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{unique}`")
    try:
        yield unique
    finally:
        with private.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{unique}`")


def _execute(conn: pymysql.connections.Connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)


# --------------------------------------------------------------------------- preflight


def test_preflight_refuses_a_server_without_binlog_and_says_what_to_set() -> None:
    # The machine's MariaDB on 3306 runs without a binlog (README, "Tests").
    conn = SYSTEM_SERVER.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@log_bin")
            (log_bin,) = cur.fetchone()
        assert not log_bin, "the system MariaDB on 3306 is expected to run without a binlog"
        with pytest.raises(SourceConfigError) as refused:
            preflight(conn)
    finally:
        conn.close()
    msg = str(refused.value)
    assert "log_bin=OFF" in msg
    assert "set log_bin=ON" in msg
    assert "my.cnf" in msg
    assert "restart" in msg


def test_preflight_passes_on_a_full_row_binlog(
    private: pymysql.connections.Connection,
) -> None:
    preflight(private)


@pytest.mark.parametrize(
    ("variable", "bad", "good"),
    [
        ("binlog_format", "MIXED", "ROW"),
        ("binlog_row_image", "MINIMAL", "FULL"),
        ("binlog_row_metadata", "MINIMAL", "FULL"),
        ("log_bin_compress", "ON", "OFF"),
    ],
)
def test_preflight_names_each_wrong_variable(
    private: pymysql.connections.Connection, variable: str, bad: str, good: str
) -> None:
    with private.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES LIKE %s", (variable,))
        (_, before) = cur.fetchone()
    try:
        _execute(private, f"SET GLOBAL {variable} = '{bad}'")
        with pytest.raises(SourceConfigError) as exc:
            preflight(private)
    finally:
        _execute(private, f"SET GLOBAL {variable} = '{before}'")
    msg = str(exc.value)
    assert f"{variable}={bad}" in msg
    assert f"set {variable}={good}" in msg
    preflight(private)


# --------------------------------------------------------------------------- positions


def test_current_position_advances_after_a_write(
    private: pymysql.connections.Connection, database: str
) -> None:
    _execute(private, f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    before = current_position(private)
    assert isinstance(before, BinlogPosition)
    assert before.file.startswith("binlog.")
    assert before.row == 0
    assert before.pos > 4
    _execute(private, f"INSERT INTO `{database}`.t VALUES (1), (2)")
    after = current_position(private)
    assert after > before
    assert after.key() > before.key()
    assert current_position(private) == after  # reading it writes nothing


def test_check_position_available_refuses_a_purged_position(
    private: pymysql.connections.Connection, database: str
) -> None:
    _execute(private, f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    first = current_position(private)
    _execute(private, "FLUSH BINARY LOGS", f"INSERT INTO `{database}`.t VALUES (1)")
    _execute(private, "FLUSH BINARY LOGS", f"INSERT INTO `{database}`.t VALUES (2)")
    newest = current_position(private)
    assert newest.file_seq >= first.file_seq + 2
    # Still there: no error.
    check_position_available(private, first)
    _execute(private, f"PURGE BINARY LOGS TO '{newest.file}'")
    assert oldest_binlog(private) == BinlogPosition.at(newest.file, 4)

    with pytest.raises(SourceConfigError) as exc:
        check_position_available(private, first)
    msg = str(exc.value)
    assert "purged" in msg
    assert str(first) in msg
    assert newest.file in msg
    assert "snapshot" in msg
    # The file before the oldest is gone too, a later position in the oldest file is fine.
    with pytest.raises(SourceConfigError, match="purged"):
        check_position_available(private, BinlogPosition.at(_file(newest.file_seq - 1), 4))
    check_position_available(private, newest)
    check_position_available(private, BinlogPosition.at(newest.file, 4))


def _file(seq: int) -> str:
    return f"binlog.{seq:06d}"


# --------------------------------------------------------------------------- snapshot


def test_consistent_snapshot_sees_only_rows_committed_before_it(
    mariadb: PrivateMariaDB, private: pymysql.connections.Connection, database: str
) -> None:
    _execute(
        private,
        f"CREATE TABLE `{database}`.items (id INT PRIMARY KEY, name VARCHAR(20))",
        f"INSERT INTO `{database}`.items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    schema = load_schemas(private, TableFilter(include=(f"{database}.items",)))[(database, "items")]
    before_open = current_position(private)
    snap = ConsistentSnapshot(_address(mariadb))
    try:
        _execute(
            private,
            f"INSERT INTO `{database}`.items VALUES (4, 'd'), (5, 'e')",
            f"UPDATE `{database}`.items SET name = 'changed' WHERE id = 1",
            f"DELETE FROM `{database}`.items WHERE id = 2",
        )
        after_writes = current_position(private)
        chunks = list(snap.chunks(schema, chunk_rows=2))
        assert [len(c) for c in chunks] == [2, 1]
        rows = [r for c in chunks for r in c]  # in key order
        assert rows == [
            {"id": 1, "name": "a"},
            {"id": 2, "name": "b"},
            {"id": 3, "name": "c"},
        ]
        # The snapshot's point is where the concurrent writes begin: nothing lost, nothing twice.
        assert before_open <= snap.position < after_writes
        assert snap.position == BinlogPosition.at(before_open.file, before_open.pos)
        assert snap.position.row == 0
    finally:
        snap.close()


def test_snapshot_chunks_resume_after_a_key(
    mariadb: PrivateMariaDB, private: pymysql.connections.Connection, database: str
) -> None:
    _execute(
        private,
        f"CREATE TABLE `{database}`.pairs (a INT, b VARCHAR(5), PRIMARY KEY (a, b))",
        f"INSERT INTO `{database}`.pairs VALUES (1,'x'),(1,'y'),(2,'a'),(3,'z')",
    )
    schema = load_schemas(private, TableFilter(include=(f"{database}.pairs",)))[(database, "pairs")]
    snap = ConsistentSnapshot(_address(mariadb))
    try:
        rows = [r for c in snap.chunks(schema, chunk_rows=1, after=[1, "x"]) for r in c]
        assert [(r["a"], r["b"]) for r in rows] == [(1, "y"), (2, "a"), (3, "z")]
    finally:
        snap.close()


def test_snapshot_of_an_empty_table_yields_nothing(
    mariadb: PrivateMariaDB, private: pymysql.connections.Connection, database: str
) -> None:
    _execute(private, f"CREATE TABLE `{database}`.empty (id INT PRIMARY KEY)")
    schema = TableSchema(database, "empty", (Column("id", "int", "int(11)", False),), ("id",))
    snap = ConsistentSnapshot(_address(mariadb))
    try:
        assert list(snap.chunks(schema, chunk_rows=100)) == []
    finally:
        snap.close()


# --------------------------------------------------------------------------- schemas


def test_load_schemas_reads_columns_and_primary_key(
    private: pymysql.connections.Connection, database: str
) -> None:
    _execute(
        private,
        f"""CREATE TABLE `{database}`.orders (
            shop_id INT UNSIGNED NOT NULL,
            id BIGINT NOT NULL,
            price DECIMAL(12,2),
            note VARCHAR(200) NOT NULL,
            at DATETIME(6),
            kind ENUM('a','b'),
            PRIMARY KEY (id, shop_id)
        )""",
        f"CREATE TABLE `{database}`.log (msg TEXT)",
        f"CREATE TABLE `{database}`.tmp_import (id INT PRIMARY KEY)",
        f"CREATE VIEW `{database}`.v_orders AS SELECT id FROM `{database}`.orders",
    )
    found = load_schemas(private, TableFilter(exclude=(f"{database}.tmp_*",)))
    mine = {k: v for k, v in found.items() if k[0] == database}
    assert set(mine) == {(database, "orders"), (database, "log")}
    assert not {db for db, _ in found} & SYSTEM_SCHEMAS

    orders = mine[(database, "orders")]
    assert orders.database == database
    assert orders.table == "orders"
    # Key columns in key order, not table order.
    assert orders.primary_key == ("id", "shop_id")
    assert orders.key_columns == ("id", "shop_id")
    assert orders.columns == (
        Column("shop_id", "int", "int(10) unsigned", False),
        Column("id", "bigint", "bigint(20)", False),
        Column("price", "decimal", "decimal(12,2)", True),
        Column("note", "varchar", "varchar(200)", False),
        Column("at", "datetime", "datetime(6)", True),
        Column("kind", "enum", "enum('a','b')", True),
    )
    assert orders.columns[0].unsigned
    assert TableSchema.from_json(database, "orders", orders.to_json()) == orders

    log = mine[(database, "log")]
    assert log.primary_key == ()
    assert log.key_columns == ("msg",)


def test_load_schemas_includes_only_what_the_filter_selects(
    private: pymysql.connections.Connection, database: str
) -> None:
    _execute(
        private,
        f"CREATE TABLE `{database}`.a (id INT PRIMARY KEY)",
        f"CREATE TABLE `{database}`.b (id INT PRIMARY KEY)",
    )
    only_a = load_schemas(private, TableFilter(include=(f"{database}.a",)))
    assert set(only_a) == {(database, "a")}
    # Even an include-everything pattern never selects the system schemas.
    assert load_schemas(private, TableFilter(include=("mysql.*", "information_schema.*"))) == {}


def test_source_address_from_url_hides_the_password() -> None:
    a = SourceAddress.from_url("mariadb://cdc:pa55word@db.example:3307")
    assert (a.host, a.port, a.user, a.password) == ("db.example", 3307, "cdc", "pa55word")
    assert "pa55word" not in repr(a)
    assert SourceAddress.from_url("mysql://db.example") == SourceAddress(
        "db.example", 3306, "root", ""
    )
