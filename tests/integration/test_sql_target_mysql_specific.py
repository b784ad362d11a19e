"""SqlTarget on MySQL/MariaDB only: dialect names, table definitions, strict sessions.

The promises shared with the other dialects are tested in test_sql_target.py, on MariaDB too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc

from app.pipeline import SqlSink
from devstack.mariadb import PrivateMariaDB
from sinks.sql import POS_COLUMN, IncomingBatch, SqlTarget
from sources.schema import Column, TableSchema
from tests.integration.test_sql_target import ORDERS, change, mariadb_database, order, pos

pytestmark = pytest.mark.integration

WIDE = TableSchema(
    "shop",
    "wide",
    (
        Column("uuid", "binary", "binary(16)", False),
        Column("body", "longtext", "longtext"),
        Column("kind", "enum", "enum('a','b')"),
        Column("blob", "longblob", "longblob"),
        Column("at", "timestamp", "timestamp(6)"),
        Column("dur", "time", "time"),
    ),
    ("uuid",),
)


@contextlib.contextmanager
def target(url: str, unique: str) -> Iterator[SqlTarget]:
    t = SqlTarget(SqlSink(name=f"sink_{unique}", url=url, source="s"))
    try:
        yield t
    finally:
        t.close()


def batch(events: list[dict[str, Any]], schema: TableSchema, offset: int = 0) -> IncomingBatch:
    return IncomingBatch(
        f"t.{schema.table}", 0, offset, schema.database, schema.table, schema, events
    )


def show_create(t: SqlTarget, table: str) -> str:
    with t.engine.connect() as conn:
        return str(conn.execute(sa.text(f"SHOW CREATE TABLE `{table}`")).one()[1])


@pytest.fixture
def mysql_url(mariadb: PrivateMariaDB, unique: str) -> Iterator[str]:
    with mariadb_database(mariadb, f"tgt_{unique}") as url:
        yield url


def test_a_mariadb_url_gives_the_mariadb_dialect_and_works(mysql_url: str, unique: str) -> None:
    url = mysql_url.replace("mysql+pymysql://", "mariadb+pymysql://")
    with target(url, unique) as t:
        assert t.dialect == "mariadb"
        t.apply([batch([change("c", {"id": 1}, order(1, "a"), pos(10))], ORDERS, offset=0)])
        t.apply([batch([change("u", {"id": 1}, order(1, "b"), pos(20))], ORDERS, offset=1)])
        t.apply([batch([change("u", {"id": 1}, order(1, "old"), pos(15))], ORDERS, offset=2)])
        t.apply([batch([change("d", {"id": 2}, None, pos(30))], ORDERS, offset=3)])
        t.apply([batch([change("c", {"id": 2}, order(2, "zombie"), pos(5))], ORDERS, offset=1)])
        with t.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT id, name, {POS_COLUMN} FROM orders")).all()
        assert [tuple(r) for r in rows] == [(1, "b", pos(20))]
        assert t.stored_progress() == {("t.orders", 0): 3}
        assert "utf8mb4_nopad_bin" in show_create(t, "orders")


def test_tables_are_innodb_utf8mb4_binary_and_keep_the_source_precision(
    mysql_url: str, unique: str
) -> None:
    with target(mysql_url, unique) as t:
        key = {"uuid": "AAECAwQFBgcICQoLDA0ODw=="}
        t.apply([batch([change("c", key, {"uuid": bytes(range(16))}, pos(1), WIDE)], WIDE)])
        ddl = show_create(t, "wide")
        for expected in (
            "`uuid` binary(16) NOT NULL",
            "`body` longtext",
            "`kind` longtext",
            "`blob` longblob",
            "`at` datetime(6)",
            "`dur` time(6)",
            "`_sluice_pos` varchar(40) CHARACTER SET ascii COLLATE ascii_bin",
            "PRIMARY KEY (`uuid`)",
            "ENGINE=InnoDB",
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin",
        ):
            assert expected in ddl
        tombstones = show_create(t, "_sluice_tombstones")
        assert "PRIMARY KEY (`table_name`,`key_hash`)" in tombstones
        assert "AUTO_INCREMENT" not in ddl


def test_large_text_and_blob_values_are_kept_whole(mysql_url: str, unique: str) -> None:
    body, blob = "ü" * 100_000, bytes(range(256)) * 1000  # past TEXT's and BLOB's 64 KiB
    key = {"uuid": "AAECAwQFBgcICQoLDA0ODw=="}
    after = {"uuid": bytes(range(16)), "body": body, "blob": blob}
    with target(mysql_url, unique) as t:
        t.apply([batch([change("c", key, after, pos(1), WIDE)], WIDE)])
        with t.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT body, `blob` FROM wide")).one()
    assert tuple(stored) == (body, blob)


def test_the_sink_session_is_strict_whatever_the_server_default(
    mariadb: PrivateMariaDB, mysql_url: str, unique: str
) -> None:
    with mariadb.connect() as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.sql_mode")
        (saved,) = cur.fetchone()
        cur.execute("SET GLOBAL sql_mode = ''")
        try:
            with target(mysql_url, unique) as t:
                too_long = change("c", {"id": 1}, order(1, "x" * 101), pos(1))
                with pytest.raises(sa_exc.DataError, match="Data too long"):
                    t.apply([batch([too_long], ORDERS)])
                assert t.stored_progress() == {}
        finally:
            cur.execute("SET GLOBAL sql_mode = %s", (saved,))
