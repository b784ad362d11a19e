"""Four source jobs on two workers: the jobs spread over both; when one worker is killed, its
jobs resume on the other from their committed progress, and every target equals its source."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.churn import Churn
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.kafka import change_events
from tests.support.pipeline import worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

COLUMNS = ["id", "n", "label"]
JOBS = 4


def _streaming(w: WorkerProcess) -> set[str]:
    try:
        jobs = w.status()["jobs"]
    except OSError:
        return set()
    return {name for name, j in jobs.items() if j.get("phase") == "streaming"}


def test_jobs_spread_over_workers_and_move_when_one_dies(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    conn = mariadb.connect()
    sources, sinks = [], []
    for j in range(JOBS):
        db = f"job{j}_{unique}"
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"CREATE TABLE `{db}`.items (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
            cur.executemany(
                f"INSERT INTO `{db}`.items VALUES (%s, 0, 'seed')", [(i,) for i in range(1, 201)]
            )
        sources.append(
            f"""  - name: job{j}
    url: mysql://root@127.0.0.1:{mariadb.port}
    server_id: {abs(hash(unique)) % 100000 + 2000 + j}
    tables: {{include: ["{db}.*"]}}
    topic_prefix: {unique}-{j}
"""
        )
        sinks.append(
            f"""  - {{name: pg{j}, source: job{j}, url: "{pg_url}", table_name: "{db}_{{table}}"}}
"""
        )
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("sources:\n" + "".join(sources) + "sinks:\n" + "".join(sinks))
    env = {**worker_env(broker, pipeline, unique), "SLUICE_CONTROL_PARTITIONS": "4"}
    w1, w2 = workers(env, "w1"), workers(env, "w2")
    w1.wait_ready()
    w2.wait_ready()

    names = {f"job{j}" for j in range(JOBS)}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        a, b = _streaming(w1), _streaming(w2)
        if a | b == names and not a & b:
            break
        time.sleep(1)
    assert a | b == names and not a & b, (a, b)
    assert a and b, f"jobs did not spread: w1 {a}, w2 {b}"

    churns = [Churn(mariadb, f"`job{j}_{unique}`.items") for j in range(JOBS)]
    for c in churns:
        c.start()
    try:
        time.sleep(3)
        w1.kill()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _streaming(w2) != names:
            time.sleep(1)
        assert _streaming(w2) == names, w2.log_tail()
        time.sleep(2)
    finally:
        for c in churns:
            c.stop.set()
            c.join()
    for c in churns:
        assert c.error is None, c.error
    for j in range(JOBS):
        db = f"job{j}_{unique}"

        def explain(j: int = j, db: str = db) -> str:
            """Where the changes of the rows that differ are: CDC topic, delivery topic."""
            src = set(source_rows(conn, f"`{db}`.items", COLUMNS))
            tgt = set(target_rows(pg_url, f"{db}_items", COLUMNS))
            ids = {int(r[0]) for r in src ^ tgt}
            lines = [f"job{j}: rows that differ: {sorted(ids)}"]
            for topic in (f"{unique}-{j}.{db}.items", f"{unique}-delivery"):
                events = asyncio.run(change_events(broker.bootstrap, topic, 3))
                for ev in events:
                    key = (ev.get("key") or {}).get("id")
                    if key in ids and ev.get("_table") == "items":
                        lines.append(
                            f"  {topic}[{ev['_partition']}]@{ev['_offset']} {ev['op']} "
                            f"id={key} pos={ev['pos']}"
                        )
            return "\n".join(lines) + "\n" + w2.log_tail()

        wait_until_equal(
            lambda db=db: source_rows(conn, f"`{db}`.items", COLUMNS),  # type: ignore[misc]
            lambda db=db: target_rows(pg_url, f"{db}_items", COLUMNS),  # type: ignore[misc]
            timeout=120,
            on_timeout=explain,
        )
