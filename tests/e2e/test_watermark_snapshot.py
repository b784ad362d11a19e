"""The watermark snapshot (forced on MariaDB) of 20,000 rows while a thread keeps inserting,
updating and deleting, with a SIGKILL of the worker in the middle: the snapshot resumes after its
last committed chunk, and the state rebuilt from the CDC topic (latest record per key by
position, deletes applied) and the PostgreSQL target both end equal to the source, row for row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.broker import EmbeddedBroker
from app.topics import cdc_topic
from devstack.mariadb import PrivateMariaDB
from tests.support.churn import Churn
from tests.support.compare import canonical, source_rows, target_rows, wait_until_equal
from tests.support.kafka import read_json
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COLUMNS = ["id", "n", "label"]
ROWS = 20_000
CHUNK = 2000
PARTITIONS = 3  # SLUICE_TOPIC_PARTITIONS of worker_env


def spread_churn(table: str, i: int) -> list[str]:
    """Updates touching 1/211 of the rows (less for the sink to catch up with than 1/7) and a
    delete of a seeded row each turn, so deletes fall inside the chunks' key ranges too, not only
    among the new rows."""
    return [
        f"INSERT INTO {table} VALUES ({i}, 0, 'new')",
        f"UPDATE {table} SET n = n + 1 WHERE id % 211 = {i % 211}",
        f"DELETE FROM {table} WHERE id = {i - 50}",
        f"DELETE FROM {table} WHERE id = {i * 7919 % ROWS + 1}",
    ]


async def _topic_state(bootstrap: str, topic: str) -> list[tuple[Any, ...]]:
    """Per key the record with the newest position; a delete removes the key."""
    newest: dict[Any, tuple[str, dict[str, Any] | None]] = {}
    for partition in range(PARTITIONS):
        for batch in await read_json(bootstrap, topic, partition=partition):
            for ev in batch["events"]:
                if ev["op"] not in ("c", "u", "d", "r"):
                    continue
                key = ev["key"]["id"]
                held = newest.get(key)
                if held is None or held[0] <= ev["pos"]:
                    newest[key] = (ev["pos"], ev["after"])
    rows = [r for _, r in newest.values() if r is not None]
    return sorted((tuple(canonical(r[c]) for c in COLUMNS) for r in rows), key=lambda t: int(t[0]))


def test_watermark_snapshot_under_churn_and_crash(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"wm_{unique}"
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
    pipeline = pg_pipeline(tmp_path, mariadb, database, unique, pg_url, snapshot_method="watermark")
    env = {**worker_env(broker, pipeline, unique), "SLUICE_SNAPSHOT_CHUNK_ROWS": str(CHUNK)}
    churn = Churn(mariadb, src, first_id=ROWS + 1, statements=spread_churn)
    worker = workers(env, "w1")

    def job() -> dict[str, Any]:
        try:
            return dict(worker.status()["jobs"].get("shop", {}))
        except OSError:
            return {}

    def wait_for(done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        while not done(state := job()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done(state), (state, worker.log_tail())
        return state

    # Churn from the snapshot's start on (none is wasted on the worker's start).
    wait_for(lambda j: j.get("phase") in ("snapshot", "streaming"))
    churn.start()
    try:
        killed_at = wait_for(lambda j: j.get("snapshot_chunks", 0) >= 3)
        assert killed_at["phase"] == "snapshot", killed_at
        worker.kill()  # SIGKILL in the middle of the snapshot
        worker = workers(env, "w1-restarted")
        status = wait_for(lambda j: j.get("phase") == "streaming")
    finally:
        churn.stop.set()
        churn.join()
    assert churn.error is None, churn.error
    assert churn.statements > 50
    assert status["snapshot_method"] == "watermark"
    assert status["snapshot_resumed_after"] is not None, status
    assert status["snapshot_chunks"] >= ROWS // CHUNK
    # The churn touched chunks between their SELECT and their high watermark.
    reconciled = killed_at["snapshot_reconciled"] + status["snapshot_reconciled"]
    assert reconciled > 0, (killed_at, status)

    expected = wait_until_equal(
        lambda: source_rows(conn, src, COLUMNS),
        lambda: target_rows(pg_url, "items", COLUMNS),
        timeout=120,
        on_timeout=worker.log_tail,
    )
    topic = cdc_topic(unique, database, "items")
    assert asyncio.run(_topic_state(broker.bootstrap, topic)) == expected

    records = asyncio.run(read_json(broker.bootstrap, f"{unique}-positions", b"shop"))
    chunks = [r["snapshot"] for r in records if r["phase"] == "snapshot"]
    highs = [c["high"] for c in chunks]
    assert len({(h["file"], h["pos"]) for h in highs}) > 1, "each chunk has its own position"
    # Every committed chunk ends after the one before: none was read again after the restart.
    ends = [c["after"][0] for c in chunks if c["after"] is not None]
    assert ends == sorted(set(ends)) and len(ends) >= ROWS // CHUNK - 1
    # Streaming starts at the first chunk's high watermark, also after the restart.
    assert all(c["start"] == highs[0] for c in chunks)
    handoff = next(r for r in records if r["phase"] == "streaming")
    assert handoff["position"] == highs[0]
