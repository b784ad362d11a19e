"""Kill -9 of the worker running the source job, while changes keep coming.

The survivor must take over the job (its slot moves with the group rebalance), recover the
exactly-once table state without crashing (Faust's highwater fix, app/faust_compat.py), and the
target must end equal to the source: nothing lost, nothing doubled. The killed worker then
comes back with its old data directory and the group is consistent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.churn import Churn
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

COLUMNS = ["id", "n", "label"]


def _job_runner(ws: list[WorkerProcess]) -> WorkerProcess | None:
    for w in ws:
        try:
            job = w.status()["jobs"].get("shop", {})
        except OSError:
            continue
        if job.get("phase") == "streaming":
            return w
    return None


def test_kill_worker_running_the_job(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"fo_{unique}"
    src = f"`{database}`.items"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
        cur.executemany(f"INSERT INTO {src} VALUES (%s, 0, 'seed')", [(i,) for i in range(1, 1001)])
    env = worker_env(broker, pg_pipeline(tmp_path, mariadb, database, unique, pg_url), unique)
    w1 = workers(env, "w1")
    w2 = workers(env, "w2")
    w1.wait_ready()
    w2.wait_ready()

    def source() -> list[tuple[object, ...]]:
        return source_rows(conn, src, COLUMNS)

    def target() -> list[tuple[object, ...]]:
        return target_rows(pg_url, "items", COLUMNS)

    def logs() -> str:
        return "\n---\n".join(w.log_tail(40) for w in (w1, w2))

    wait_until_equal(source, target, timeout=120, on_timeout=logs)

    churn = Churn(mariadb, src)
    churn.start()
    try:
        time.sleep(3)
        runner = _job_runner([w1, w2])
        assert runner is not None, logs()
        survivor = w2 if runner is w1 else w1
        runner.kill()  # SIGKILL: no clean leave, no commit, open Kafka transactions
        # The survivor takes over the job once the group notices the dead member.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _job_runner([survivor]) is None:
            assert survivor.proc is not None and survivor.proc.poll() is None, logs()
            time.sleep(1)
        assert _job_runner([survivor]) is survivor, logs()
        time.sleep(3)
    finally:
        churn.stop.set()
        churn.join()
    assert churn.error is None, churn.error
    assert churn.statements > 0
    wait_until_equal(source, target, timeout=120, on_timeout=logs)
    assert survivor.proc is not None and survivor.proc.poll() is None, "survivor crashed"

    # The killed worker returns with its old data directory (stale RocksDB state).
    back = WorkerProcess(env, runner.workdir, runner.name).start()
    try:
        back.wait_ready(timeout=120)
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {src} SET label = 'after return'")
        wait_until_equal(source, target, timeout=120, on_timeout=logs)
        for w in (back, survivor):
            assert w.proc is not None and w.proc.poll() is None, w.log_tail()
    finally:
        back.stop(timeout=30)
