"""Fan-out: several sinks on the same CDC topics, each in its own worker group (app id).

The source job runs in a group of its own that writes no sink (``SLUICE_SINKS=`` empty) and so
forwards nothing to its delivery topic. A stopped sink and a sink whose target is unreachable
hold nobody back: the healthy sink keeps the target equal to the source, the stopped one catches
up when it comes back, and the broken one reports its retries in the status view.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from app.topics import delivery_topic
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.kafka import partitions_and_records
from tests.support.pipeline import sink, worker_env, write_pipeline
from tests.support.worker import WorkerProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COLUMNS = ["id", "n"]


def test_a_stopped_or_failing_sink_holds_back_no_other(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"fan_{unique}"
    src = f"`{database}`.t"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT)")
        cur.executemany(f"INSERT INTO {src} VALUES (%s, 0)", [(i,) for i in range(1, 101)])
    lite = f"sqlite:///{tmp_path / 'lite.db'}"
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    pipeline = write_pipeline(
        tmp_path, mariadb, database, unique,
        [sink("pg", pg_url), sink("lite", lite), sink("broken", dead)],
    )  # fmt: skip
    base = worker_env(broker, pipeline, unique)

    def sink_group(name: str) -> dict[str, str]:
        """A worker group (app id) of its own that writes sink ``name`` and runs no source."""
        return {**base, "SLUICE_APP_ID": f"{unique}-{name}", "SLUICE_SINKS": name,
                "SLUICE_RUN_SOURCES": "false"}  # fmt: skip

    main = workers({**base, "SLUICE_SINKS": ""}, "main")  # sources only
    pg = workers(sink_group("pg"), "pg")
    broken = workers(sink_group("broken"), "broken")
    main.wait_ready()
    pg.wait_ready()
    broken.wait_ready()

    def source() -> list[tuple[object, ...]]:
        return source_rows(conn, src, COLUMNS)

    wait_until_equal(source, lambda: target_rows(pg_url, "t", COLUMNS), on_timeout=pg.log_tail)
    # The lite sink group is not running: the pg sink does not wait for it.
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {src} SET n = n + 1")
        cur.execute(f"DELETE FROM {src} WHERE id > 90")
    wait_until_equal(source, lambda: target_rows(pg_url, "t", COLUMNS), on_timeout=pg.log_tail)
    assert target_rows(lite, "t", COLUMNS) == []

    # When it starts, it catches up from the beginning of the topics.
    lite_worker = workers(sink_group("lite"), "lite")
    lite_worker.wait_ready()
    wait_until_equal(
        source, lambda: target_rows(lite, "t", COLUMNS), on_timeout=lite_worker.log_tail
    )

    # The broken sink keeps retrying (nothing lost, nothing skipped) and says so.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        broken_sink = broken.status()["sinks"]["broken"]
        if broken_sink["retries"] > 0:
            break
        time.sleep(1)
    assert broken_sink["retries"] > 0 and broken_sink["changes_applied"] == 0, broken_sink
    assert broken_sink["last_error"], broken_sink
    assert "pg" not in broken.status()["sinks"]
    assert "shop" not in broken.status()["jobs"]  # sources run only in the main group
    assert "shop" in main.status()["jobs"] and main.status()["sinks"] == {}
    # The main group's delivery topic exists (the group declares it) and holds nothing.
    assert asyncio.run(partitions_and_records(broker.bootstrap, delivery_topic(unique))) == (3, 0)
