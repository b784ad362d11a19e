"""MariaDB binlog → Kafka CDC topic → Faust agents → PostgreSQL, on real processes.

The target table must equal the source table after inserts, updates (also of the primary key),
deletes and multi-row transactions, also across a clean worker restart, and a second worker
must join the same group and share the partitions.
"""

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

COLUMNS = ["id", "customer", "status", "amount", "note", "created_at", "payload"]


def test_changes_reach_postgres_through_real_workers(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"shop_{unique}"
    table = "orders"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(
            f"""CREATE TABLE `{database}`.{table} (
                id BIGINT PRIMARY KEY, customer VARCHAR(100) NOT NULL,
                status ENUM('new','paid','shipped') NOT NULL, amount DECIMAL(12,2),
                note TEXT, created_at DATETIME(6), payload JSON)"""
        )
        # Rows that exist before the job starts arrive through the snapshot.
        cur.executemany(
            f"INSERT INTO `{database}`.{table} VALUES (%s,%s,%s,%s,%s,%s,%s)",
            [
                (i, f"cust{i}", "new", f"{i}.25", None, "2024-01-02 03:04:05.123456", '{"a": 1}')
                for i in range(1, 51)
            ],
        )
    pipeline = pg_pipeline(tmp_path, mariadb, database, unique, pg_url)
    env = worker_env(broker, pipeline, unique)
    w1 = workers(env, "w1")
    w1.wait_ready()

    src = f"`{database}`.{table}"

    def source() -> list[tuple[object, ...]]:
        return source_rows(conn, src, COLUMNS)

    def target() -> list[tuple[object, ...]]:
        return target_rows(pg_url, table, COLUMNS)

    wait_until_equal(source, target, on_timeout=w1.log_tail)
    # The table existed before the worker started: its topic was created and subscribed before
    # the worker joined, so the snapshot needed no rebalance (agents/discovery.py).
    log = w1.log_path.read_text(errors="replace")
    assert f"{unique}.{database}.{table}" in log.split("Joined group", 1)[0]
    assert "subscribing to new CDC topics" not in log

    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {src} VALUES (100,'zoë 🚀','paid',99.99,'',NOW(6),'[1,2]')")
        cur.execute(f"UPDATE {src} SET status='paid', amount=amount+1 WHERE id <= 10")
        cur.execute(f"DELETE FROM {src} WHERE id BETWEEN 11 AND 15")
        cur.execute(f"UPDATE {src} SET id = 1000 WHERE id = 20")  # primary key change
        conn.begin()
        cur.execute(f"INSERT INTO {src} VALUES (200,'tx','new',1,NULL,NULL,NULL)")
        cur.execute(f"UPDATE {src} SET note='in tx' WHERE id = 200")
        cur.execute(f"DELETE FROM {src} WHERE id = 21")
        conn.commit()
    rows = wait_until_equal(source, target, on_timeout=w1.log_tail)
    assert len(rows) == 50 + 1 + 1 - 5 - 1

    status = w1.status()
    assert status["assignment"][f"{unique}.{database}.{table}"] == [0, 1, 2]
    assert status["assignment"][f"{unique}-delivery"] == [0, 1, 2]
    assert status["assignment"][f"{unique}-jobs"] == [0, 1, 2, 3, 4]
    assert status["jobs"]["shop"]["phase"] == "streaming"
    assert status["jobs"]["shop"]["position"]
    assert status["sinks"]["pg"]["dead_letters"] == 0

    # An idle source still commits and says it is alive, through to the processing agent: a
    # heartbeat at the job's current position arrives (an earlier one, sent while the test was
    # idle before its changes, may be the latest the agent has seen for a moment).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        beats = [v for k, v in w1.get("/sluice/progress")[1].items() if "__heartbeat" in k]
        job = w1.status()["jobs"]["shop"]
        if job["last_heartbeat_at"] and beats and beats[0]["source_position"] == job["position"]:
            break
        time.sleep(0.5)
    assert beats and beats[0]["source_position"] == w1.status()["jobs"]["shop"]["position"]

    # A clean restart resumes from the committed position: nothing lost, nothing doubled.
    assert w1.stop() == 0
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {src} VALUES (300,'while down','new',3,NULL,NULL,NULL)")
        cur.execute(f"DELETE FROM {src} WHERE id = 1")
    w1 = workers(env, "w1b")
    w1.wait_ready()
    wait_until_equal(source, target, on_timeout=w1.log_tail)

    # A second worker with its own web port and data directory joins the same group.
    w2 = workers(env, "w2")
    w2.wait_ready()
    delivery = f"{unique}-delivery"

    def shares() -> tuple[list[int], list[int]]:
        a = w1.status()["assignment"].get(delivery, [])
        b = w2.status()["assignment"].get(delivery, [])
        return a, b

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        a, b = shares()
        if a and b and sorted(a + b) == [0, 1, 2]:
            break
        time.sleep(1)
    assert a and b and sorted(a + b) == [0, 1, 2], (a, b)
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {src} SET note='after join' WHERE id > 0")
    wait_until_equal(source, target, on_timeout=lambda: w1.log_tail() + w2.log_tail())

    # Clean stops after rebalances (jobs moved, transactions re-begun) exit at once, with 0.
    assert w2.stop(timeout=45) == 0, w2.log_tail()
    assert w1.stop(timeout=45) == 0, w1.log_tail()
