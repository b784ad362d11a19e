"""One source transaction far larger than a Kafka transaction, and a SIGKILL in the middle of it.

The job commits the transaction in parts of SLUICE_SOURCE_MAX_TXN_ROWS row changes, each with
progress "inside the transaction starting at P, n rows done". After the worker is killed inside
the transaction, the restarted job must go on after the last committed part: the target ends
equal to the source, every row of the transaction is in the CDC topic, and no committed part is
read again (at most the part in flight at the kill, aborted, shows twice). A CREATE TABLE …
SELECT larger than a part (a DDL statement and rows in one transaction) reaches the target too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.kafka import change_events, read_json
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COLUMNS = ["id", "label"]
ROWS = 100_000
PART = 5_000
COPY = 12_000  # rows of a CREATE TABLE … SELECT: three parts
PARTITIONS = 3  # SLUICE_TOPIC_PARTITIONS of worker_env


def _inside(w: WorkerProcess) -> int:
    """Rows of the current transaction the job committed ("file:pos#rows"), 0 at a boundary."""
    try:
        position = w.status()["jobs"].get("shop", {}).get("position") or ""
    except OSError:
        return 0
    return int(position.rpartition("#")[2]) if "#" in position else 0


def test_a_huge_transaction_is_committed_in_parts_and_resumed_inside(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"big_{unique}"
    src = f"`{database}`.t"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, label VARCHAR(40))")
        cur.execute(f"INSERT INTO {src} VALUES (0, 'before')")
    env = {
        **worker_env(broker, pg_pipeline(tmp_path, mariadb, database, unique, pg_url), unique),
        "SLUICE_SOURCE_MAX_TXN_ROWS": str(PART),
    }
    w1 = workers(env, "w1")
    w1.wait_ready()
    wait_until_equal(
        lambda: source_rows(conn, src, COLUMNS),
        lambda: target_rows(pg_url, "t", COLUMNS),
        on_timeout=w1.log_tail,
    )
    started = time.monotonic()
    copy = f"`{database}`.t2"
    with conn.cursor() as cur:
        # A new table and its rows in one split transaction: the CREATE is its item 0.
        cur.execute(
            f"CREATE TABLE {copy} (PRIMARY KEY (id)) "
            f"SELECT seq AS id, CONCAT('copy ', seq) AS label FROM `{database}`.seq_1_to_{COPY}"
        )
        # One statement, one transaction.
        cur.execute(
            f"INSERT INTO {src} SELECT seq, CONCAT('row ', seq) FROM `{database}`.seq_1_to_{ROWS}"
        )
    # Kill the worker once its committed progress is inside the transaction, past a few parts.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _inside(w1) < 3 * PART:
        time.sleep(0.05)
    done_at_kill = _inside(w1)
    assert 3 * PART <= done_at_kill < ROWS, w1.log_tail()
    w1.kill()

    w2 = workers(env, "w2")
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {src} SET label = 'after' WHERE id IN (0, {ROWS})")

    def explain() -> str:
        """Where the rows missing from the target are: the CDC topic, the delivery topic."""
        missing = {int(r[0]) for r in source_rows(conn, src, COLUMNS)} - {
            int(r[0]) for r in target_rows(pg_url, "t", COLUMNS)
        }
        lines = [f"{len(missing)} rows missing, ids {min(missing)}..{max(missing)}"]
        for topic in (f"{unique}.{database}.t", f"{unique}-delivery"):
            events = asyncio.run(change_events(broker.bootstrap, topic, PARTITIONS))
            hits = [e for e in events if (e.get("key") or {}).get("id") in missing]
            lines.append(f"{topic}: {len(hits)} events of them")
            lines += [f"  [{e['_partition']}]@{e['_offset']} id={e['key']['id']} pos={e['pos']}"
                      for e in hits[:5]]  # fmt: skip
        progress = asyncio.run(read_json(broker.bootstrap, f"{unique}-positions", b"shop"))
        lines.append(f"progress: {[r['position'] for r in progress[-8:]]}")
        return "\n".join(lines) + "\n" + w2.log_tail()

    wait_until_equal(
        lambda: source_rows(conn, src, COLUMNS),
        lambda: target_rows(pg_url, "t", COLUMNS),
        timeout=120,
        on_timeout=explain,
    )
    elapsed = time.monotonic() - started
    wait_until_equal(
        lambda: source_rows(conn, copy, COLUMNS),
        lambda: target_rows(pg_url, "t2", COLUMNS),
        timeout=30,
        on_timeout=w2.log_tail,
    )

    # Committed progress inside the transaction only grows, part by part: no committed part
    # was read again, and the restarted job went on from the one committed at the kill.
    progress = asyncio.run(read_json(broker.bootstrap, f"{unique}-positions", b"shop"))
    inside: dict[tuple[str, int], list[int]] = {}  # transaction start → items done, in order
    for r in progress:
        if r["position"] and r["position"]["row"]:
            start = (r["position"]["file"], r["position"]["pos"])
            inside.setdefault(start, []).append(r["position"]["row"])
    # Each part once, in order; the embedded broker also shows records of aborted transactions,
    # so the progress of the part in flight at the kill may show twice, and nothing else may.
    assert sorted((sorted(set(rows)) for rows in inside.values()), key=len) == [
        [PART, 2 * PART],  # the CREATE TABLE … SELECT
        [n * PART for n in range(1, ROWS // PART)],  # the big one
    ], inside
    assert all(rows == sorted(rows) for rows in inside.values()), inside
    assert sum(len(rows) - len(set(rows)) for rows in inside.values()) <= 1, inside
    assert done_at_kill % PART == 0
    assert progress[-1]["position"]["row"] == 0

    # Every row change of the transaction is in the CDC topic; the only ones there twice are
    # at most one part's, written by the killed worker in a transaction it never committed.
    topic = f"{unique}.{database}.t"
    seen: Counter[str] = Counter()
    for p in range(PARTITIONS):
        for batch in asyncio.run(read_json(broker.bootstrap, topic, partition=p)):
            seen.update(e["pos"] for e in batch["events"] if e["op"] == "c" and e["key"]["id"])
    assert len(seen) == ROWS
    doubled = sum(n - 1 for n in seen.values())
    assert doubled <= PART, doubled
    print(f"{ROWS} rows through in {elapsed:.1f}s; {doubled} records doubled")
