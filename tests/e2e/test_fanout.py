"""Fan-out: several sinks on the same CDC topics, each in its own worker group (app id).

A stopped sink and a sink whose target is unreachable hold nobody back: the healthy sink keeps
the target equal to the source, the stopped one catches up when it comes back, and the broken
one reports its retries in the status view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.e2e.test_walking_skeleton import _env
from tests.support.compare import source_rows, target_rows, wait_until_equal
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
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""
sources:
  - name: shop
    url: mysql://root@127.0.0.1:{mariadb.port}
    server_id: {abs(hash(unique)) % 100000 + 1000}
    tables: {{include: ["{database}.*"]}}
    topic_prefix: {unique}
sinks:
  - {{name: pg, source: shop, url: "{pg_url}"}}
  - {{name: lite, source: shop, url: "{lite}"}}
  - {{name: broken, source: shop, url: "{dead}"}}
"""
    )
    base = _env(broker, pipeline, unique)
    main = workers({**base, "SLUICE_SINKS": "pg"}, "main")
    broken = workers(
        {**base, "SLUICE_APP_ID": f"{unique}-broken", "SLUICE_SINKS": "broken",
         "SLUICE_RUN_SOURCES": "false"},
        "broken",
    )  # fmt: skip
    lite_env = {**base, "SLUICE_APP_ID": f"{unique}-lite", "SLUICE_SINKS": "lite",
                "SLUICE_RUN_SOURCES": "false"}  # fmt: skip
    main.wait_ready()
    broken.wait_ready()

    def source() -> list[tuple[object, ...]]:
        return source_rows(conn, src, COLUMNS)

    wait_until_equal(source, lambda: target_rows(pg_url, "t", COLUMNS), on_timeout=main.log_tail)
    # The lite sink group is not running: the pg sink does not wait for it.
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {src} SET n = n + 1")
        cur.execute(f"DELETE FROM {src} WHERE id > 90")
    wait_until_equal(source, lambda: target_rows(pg_url, "t", COLUMNS), on_timeout=main.log_tail)
    assert target_rows(lite, "t", COLUMNS) == []

    # When it starts, it catches up from the beginning of the topics.
    lite_worker = workers(lite_env, "lite")
    lite_worker.wait_ready()
    wait_until_equal(
        source, lambda: target_rows(lite, "t", COLUMNS), on_timeout=lite_worker.log_tail
    )

    # The broken sink keeps retrying (nothing lost, nothing skipped) and says so.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sink = broken.status()["sinks"]["broken"]
        if sink["retries"] > 0:
            break
        time.sleep(1)
    assert sink["retries"] > 0 and sink["changes_applied"] == 0, sink
    assert sink["last_error"], sink
    assert "pg" not in broken.status()["sinks"]
    assert "shop" not in broken.status()["jobs"]  # sources run only in the main group
