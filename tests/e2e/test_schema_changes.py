"""Schema changes mid-stream, end to end: MariaDB → real workers → PostgreSQL.

A worker captures a table; while it runs the source adds a column and writes rows that use it,
widens a column, truncates the table, creates a new table with rows, and renames that table.
After each step the target must equal the source, with nothing dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy.exc as sa_exc

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def test_schema_changes_reach_the_target_between_the_right_rows(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"ddl_{unique}"
    # Target tables share the test run's PostgreSQL database: names unique to this test.
    orders, items, renamed = f"orders_{unique}", f"items_{unique}", f"goods_{unique}"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(
            f"CREATE TABLE `{database}`.{orders} "
            "(id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, amount DECIMAL(10,2))"
        )
        cur.executemany(
            f"INSERT INTO `{database}`.{orders} VALUES (%s, %s, %s)",
            [(i, f"n{i}", f"{i}.50") for i in range(1, 21)],
        )
    pipeline = pg_pipeline(tmp_path, mariadb, database, unique, pg_url)
    w1 = workers(worker_env(broker, pipeline, unique), "w1")
    w1.wait_ready()
    src = f"`{database}`.{orders}"

    def target(table: str, columns: list[str]) -> list[tuple[object, ...]]:
        try:
            return target_rows(pg_url, table, columns)
        except sa_exc.ProgrammingError:  # a column the sink has not added yet
            return [("not yet",)]

    def same(table: str, columns: list[str]) -> list[tuple[object, ...]]:
        return wait_until_equal(
            lambda: source_rows(conn, f"`{database}`.{table}", columns),
            lambda: target(table, columns),
            on_timeout=w1.log_tail,
        )

    assert len(same(orders, ["id", "name", "amount"])) == 20

    # A column added mid-stream, between rows of the old shape and rows that use it.
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {src} VALUES (21, 'before', 1)")
        cur.execute(f"UPDATE {src} SET amount = 2 WHERE id = 1")
        cur.execute(f"ALTER TABLE {src} ADD COLUMN note VARCHAR(30) NULL AFTER name")
        cur.execute(f"INSERT INTO {src} VALUES (22, 'after', 'with a note', 3)")
        cur.execute(f"UPDATE {src} SET note = CONCAT('old row ', id) WHERE id <= 5")
    assert len(same(orders, ["id", "name", "note", "amount"])) == 22

    # A widened column, then a value only the wider column holds.
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {src} MODIFY name VARCHAR(200) NOT NULL")
        cur.execute(f"INSERT INTO {src} VALUES (23, '{'long' * 40}', NULL, 4)")
    same(orders, ["id", "name", "note", "amount"])

    # TRUNCATE removes every row; rows after it arrive as usual.
    with conn.cursor() as cur:
        cur.execute(f"TRUNCATE TABLE {src}")
        cur.execute(f"INSERT INTO {src} VALUES (100, 'after truncate', NULL, 5)")
    assert len(same(orders, ["id", "name", "note", "amount"])) == 1

    # A table created mid-stream, with rows (its topic appears while the worker runs).
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{database}`.{items} (sku VARCHAR(10) PRIMARY KEY, qty INT UNSIGNED)"
        )
        cur.executemany(
            f"INSERT INTO `{database}`.{items} VALUES (%s, %s)",
            [(f"s{i}", i) for i in range(10)],
        )
        cur.execute(f"UPDATE `{database}`.{items} SET qty = qty + 100 WHERE sku = 's1'")
    assert len(same(items, ["sku", "qty"])) == 10

    # A renamed table: its rows are read again under the new name, the old target is emptied.
    with conn.cursor() as cur:
        cur.execute(f"RENAME TABLE `{database}`.{items} TO `{database}`.{renamed}")
        cur.execute(f"INSERT INTO `{database}`.{renamed} VALUES ('new', 1)")
    assert len(same(renamed, ["sku", "qty"])) == 11
    wait_until_equal(lambda: [], lambda: target_rows(pg_url, items, ["sku"]))

    status = w1.status()
    assert status["sinks"]["pg"]["dead_letters"] == 0, w1.log_tail()
    assert status["jobs"]["shop"]["schema_changes"] >= 5
    assert w1.stop(timeout=45) == 0, w1.log_tail()
