"""Bad input gets a clear error and loses nothing: a row the target refuses for good (a CHECK
constraint of the target) goes to the dead-letter topic with the reason and its source position,
the status view counts it, and every other change still arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.kafka import read_json
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_refused_rows_go_to_dead_letters_and_the_rest_arrives(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"dlq_{unique}"
    src = f"`{database}`.accounts"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, balance INT)")
        cur.executemany(f"INSERT INTO {src} VALUES (%s, %s)", [(i, i) for i in range(1, 11)])
    # The target's owner added a rule the source does not have.
    table = f"accounts_{unique}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, balance INTEGER '
                "CHECK (balance >= 0), _sluice_pos VARCHAR(40))"
            )
        )
    engine.dispose()
    pipeline = pg_pipeline(tmp_path, mariadb, database, unique, pg_url, "{table}_" + unique)
    w = workers(worker_env(broker, pipeline, unique), "w")
    w.wait_ready()
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {src} VALUES (11, -5)")  # refused by the target
        cur.execute(f"UPDATE {src} SET balance = balance + 100 WHERE id <= 5")
        cur.execute(f"INSERT INTO {src} VALUES (12, 12)")

    def target() -> list[tuple[object, ...]]:
        return target_rows(pg_url, table, ["id", "balance"])

    def source_without_refused() -> list[tuple[object, ...]]:
        return [r for r in source_rows(conn, src, ["id", "balance"]) if r[0] != "11"]

    wait_until_equal(source_without_refused, target, on_timeout=w.log_tail)
    assert w.status()["sinks"]["pg"]["dead_letters"] == 1
    deadline = time.monotonic() + 30  # the send may still be in the producer's buffer
    while not (letters := asyncio.run(read_json(broker.bootstrap, f"{unique}-dead-letters"))):
        assert time.monotonic() < deadline, "no dead letter in the topic"
        time.sleep(1)
    assert len(letters) == 1, letters
    reason = str(letters[0]["reason"])
    assert "sink pg" in reason and "check" in reason.lower() and "position" in reason
    assert '"balance":-5' in str(letters[0]["value"])  # the whole record is kept
