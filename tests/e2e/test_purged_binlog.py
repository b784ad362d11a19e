"""A resume position purged from the binlog: a clear error naming the fix, then, with
``on_purged: resnapshot``, a new snapshot brings the target back to the source."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COLUMNS = ["id", "n"]


def test_purged_position_fails_clearly_then_resnapshots(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"purge_{unique}"
    src = f"`{database}`.t"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT)")
        cur.executemany(f"INSERT INTO {src} VALUES (%s, 0)", [(i,) for i in range(1, 51)])
    pipeline = pg_pipeline(tmp_path, mariadb, database, unique, pg_url)
    env = worker_env(broker, pipeline, unique)

    def source() -> list[tuple[object, ...]]:
        return source_rows(conn, src, COLUMNS)

    def target() -> list[tuple[object, ...]]:
        return target_rows(pg_url, "t", COLUMNS)

    w = workers(env, "w1")
    w.wait_ready()
    wait_until_equal(source, target, on_timeout=w.log_tail)
    assert w.stop() == 0

    # While the job is down, changes are made and the binlog holding them is purged.
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {src} SET n = 1 WHERE id <= 10")
        cur.execute(f"INSERT INTO {src} VALUES (100, 100)")
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        newest = cur.fetchone()[0]
        # A log still read by a replica connection (a reader of an earlier test that the server
        # has not seen go yet) is kept by PURGE: retry until only the newest remains.
        deadline = time.monotonic() + 30
        while True:
            cur.execute(f"PURGE BINARY LOGS TO '{newest}'")
            cur.execute("SHOW BINARY LOGS")
            if [r[0] for r in cur.fetchall()] == [newest]:
                break
            assert time.monotonic() < deadline, "the server kept the old binlogs"
            time.sleep(1)

    w = workers(env, "w2")
    w.wait_ready()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = w.status()["jobs"].get("shop", {})
        if job.get("phase") == "failed":
            break
        time.sleep(0.5)
    assert job.get("phase") == "failed", job
    assert "purged" in job["error"] and "on_purged: resnapshot" in job["error"], job
    assert w.stop() == 0

    pipeline.write_text(
        pipeline.read_text().replace(
            "    topic_prefix:", "    on_purged: resnapshot\n    topic_prefix:"
        )
    )
    w = workers(env, "w3")
    w.wait_ready()
    wait_until_equal(source, target, on_timeout=w.log_tail)
    assert w.status()["jobs"]["shop"]["resnapshots"] == 1
