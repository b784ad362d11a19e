"""Snapshot of a 100,000-row table while the source keeps changing, with the worker killed by
SIGKILL once during the snapshot and once during streaming (issue 3's acceptance).

The restarted job must resume the snapshot after its last committed chunk (no committed chunk
is read again), hand off to streaming at the first snapshot's position, and both the state
rebuilt from the CDC topic (latest record per key by position, deletes applied) and the target
must end equal to the source, row for row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from app.broker import EmbeddedBroker
from app.topics import cdc_topic
from devstack.mariadb import PrivateMariaDB
from tests.e2e.test_watermark_snapshot import _topic_state
from tests.support.churn import Churn
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.kafka import read_json
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

COLUMNS = ["id", "n", "label"]
ROWS = 100_000
CHUNK = 2000


def range_churn(table: str, i: int) -> list[str]:
    """Inserts, updates of five rows, deletes of new and of seeded rows: about 400 row changes a
    second, spread over the whole key space (the default churn updates 1/7 of the table per
    statement, which at this size is more than the pipeline could ever catch up with)."""
    lo = i * 7919 % ROWS + 1
    return [
        f"INSERT INTO {table} VALUES ({i}, 0, 'new')",
        f"UPDATE {table} SET n = n + 1 WHERE id BETWEEN {lo} AND {lo + 4}",
        f"DELETE FROM {table} WHERE id = {i - 50}",
        f"DELETE FROM {table} WHERE id = {i * 104729 % ROWS + 1}",
    ]


def test_snapshot_resumes_after_its_last_committed_chunk(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"snap_{unique}"
    src = f"`{database}`.items"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
        for start in range(1, ROWS + 1, 5000):
            cur.executemany(
                f"INSERT INTO {src} VALUES (%s, 0, 'seed')",
                [(i,) for i in range(start, min(start + 5000, ROWS + 1))],
            )
    env = {
        **worker_env(broker, pg_pipeline(tmp_path, mariadb, database, unique, pg_url), unique),
        "SLUICE_SNAPSHOT_CHUNK_ROWS": str(CHUNK),
    }
    churn = Churn(mariadb, src, first_id=ROWS + 1, statements=range_churn)
    w1 = workers(env, "w1")
    churn.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                job = w1.status()["jobs"].get("shop", {})
            except OSError:
                job = {}
            if job.get("snapshot_chunks", 0) >= 5:
                break
            time.sleep(0.05)
        assert job.get("phase") == "snapshot", (job, w1.log_tail())
        w1.kill()
        w2 = workers(env, "w1-restarted")
        w2.wait_ready()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job = w2.status()["jobs"].get("shop", {})
            if job.get("phase") == "streaming":
                break
            time.sleep(0.5)
        assert job.get("phase") == "streaming", (job, w2.log_tail())
        assert job["snapshot_resumed_after"] is not None, job
        time.sleep(3)
        w2.kill()  # and once during streaming
        w3 = workers(env, "w1-again")
        w3.wait_ready()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = w3.status()["jobs"].get("shop", {})
            if job.get("phase") == "streaming" and job.get("transactions", 0) > 0:
                break
            time.sleep(0.5)
        assert job.get("phase") == "streaming", (job, w3.log_tail())
        time.sleep(2)
    finally:
        churn.stop.set()
        churn.join()
    assert churn.error is None, churn.error
    assert churn.statements > 100

    records = asyncio.run(read_json(broker.bootstrap, f"{unique}-positions", b"shop"))
    # The table's key is one INT column, so each chunk's end key is [id].
    chunk_ends = [r["snapshot"]["after"][0] for r in records if r["phase"] == "snapshot"]
    # Every committed chunk ends after the one before: no committed chunk was read again.
    assert chunk_ends == sorted(chunk_ends) and len(set(chunk_ends)) == len(chunk_ends)
    assert len(chunk_ends) >= ROWS // CHUNK
    final = records[-1]
    assert final["phase"] == "streaming"
    starts = {orjson.dumps(r["snapshot"]["start"]) for r in records if r["phase"] == "snapshot"}
    assert len(starts) == 1, "streaming must start at the first snapshot's position"

    expected = wait_until_equal(
        lambda: source_rows(conn, src, COLUMNS),
        lambda: target_rows(pg_url, "items", COLUMNS),
        timeout=240,
        on_timeout=w3.log_tail,
    )
    assert len(expected) > ROWS // 2
    topic = cdc_topic(unique, database, "items")
    assert asyncio.run(_topic_state(broker.bootstrap, topic)) == expected
