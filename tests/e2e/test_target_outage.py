"""The target unreachable for 30 seconds mid-stream (issue 4's acceptance): the sink retries with
backoff, and once the target is back it holds every change exactly once: the mirror equals the
source, and the change log (mode append) has one row per source change, none lost, none twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.pipeline import sink, worker_env, write_pipeline
from tests.support.proxy import TcpProxy
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COLUMNS = ["id", "n", "label"]
SEED = 100
OUTAGE_S = 30


def test_target_unreachable_for_30_seconds(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"out_{unique}"
    src = f"`{database}`.items"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
        cur.executemany(
            f"INSERT INTO {src} VALUES (%s, 0, 'seed')", [(i,) for i in range(1, SEED + 1)]
        )
    proxy = TcpProxy(sa.make_url(pg_url).port or 5432)
    proxy.start()
    through_proxy = sa.make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    pipeline = write_pipeline(
        tmp_path, mariadb, database, unique,
        [sink("mirror", f"{through_proxy}?connect_timeout=2"),
         sink("log", f"{through_proxy}?connect_timeout=2", mode="append")],
    )  # fmt: skip
    w = workers(worker_env(broker, pipeline, unique))
    w.wait_ready()
    try:
        wait_until_equal(
            lambda: source_rows(conn, src, COLUMNS),
            lambda: target_rows(pg_url, "items", COLUMNS),
            timeout=120,
            on_timeout=w.log_tail,
        )
        proxy.stop()
        cut_at = time.monotonic()
        changes = 0
        with conn.cursor() as cur:
            while time.monotonic() - cut_at < OUTAGE_S:
                i = SEED + changes // 3 + 1
                step = changes % 3
                if step == 0:
                    cur.execute(f"INSERT INTO {src} VALUES ({i}, 0, 'outage')")
                elif step == 1:
                    cur.execute(f"UPDATE {src} SET n = n + 1 WHERE id = {i - 50}")
                else:
                    cur.execute(f"DELETE FROM {src} WHERE id = {i - 70}")
                changes += 1  # each statement changes exactly one row
                time.sleep(0.05)
        # Both sinks share the worker group's agent, so the first to fail holds the batch.
        retries = {name: s["retries"] for name, s in w.status()["sinks"].items()}
        assert sum(retries.values()) > 0, retries
        proxy.start()
        wait_until_equal(
            lambda: source_rows(conn, src, COLUMNS),
            lambda: target_rows(pg_url, "items", COLUMNS),
            timeout=120,
            on_timeout=w.log_tail,
        )
        engine = sa.create_engine(pg_url)
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as pg:
                logged = pg.execute(
                    sa.text("SELECT count(*) FROM items_changes WHERE _sluice_op <> 'r'")
                ).scalar_one()
            if logged >= changes or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        engine.dispose()
        assert logged == changes  # every change once: none lost, none twice
    finally:
        proxy.stop()
