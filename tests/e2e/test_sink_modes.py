"""Real workers, sinks with ``consistency: exactly_once`` in both modes, through a crash between a
sink's database commit and the Kafka offset commit (so the restarted worker is handed messages it
already applied): the PostgreSQL mirror equals the source, a table without a primary key included
(identical rows, one of them deleted, one updated), and replaying the SQLite change log
reproduces the source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import canonical, source_rows, target_rows, wait_until_equal
from tests.support.pipeline import sink, worker_env, write_pipeline
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _replayed_log(url: str) -> list[tuple[Any, ...]]:
    """The rows of t rebuilt from its change log: per id, the newest change, unless a delete."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("t_changes"):
                return []
            log = conn.execute(
                sa.text("SELECT id, n, _sluice_op FROM t_changes ORDER BY _sluice_pos, _sluice_op")
            ).all()
    finally:
        engine.dispose()
    newest: dict[Any, tuple[Any, ...] | None] = {}
    for id_, n, op in log:  # positions are unique per id: a key change's d and c differ in id
        newest[id_] = None if op == "d" else (canonical(id_), canonical(n))
    return sorted(r for r in newest.values() if r is not None)


def test_exactly_once_sinks_in_both_modes_through_a_crash_after_the_write(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"modes_{unique}"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, n INT)")
        cur.execute(f"CREATE TABLE `{database}`.log (msg VARCHAR(20), n INT)")
        cur.executemany(f"INSERT INTO `{database}`.t VALUES (%s, 0)", [(i,) for i in range(300)])
        cur.executemany(
            f"INSERT INTO `{database}`.log VALUES (%s, %s)",
            [(f"m{i % 40}", i % 3) for i in range(300)],  # identical rows, several of each
        )
    lite = f"sqlite:///{tmp_path / 'log.db'}"
    pipeline = write_pipeline(
        tmp_path, mariadb, database, unique,
        [sink("pg", pg_url, consistency="exactly_once"),
         sink("changes", lite, mode="append", consistency="exactly_once")],
    )  # fmt: skip
    env = {**worker_env(broker, pipeline, unique), "SLUICE_SINK_BATCH_SIZE": "10"}
    crashing = workers({**env, "SLUICE_FAULT_INJECTION": "sink_after_write:2"}, "w")
    crashing.proc.wait(timeout=90)  # type: ignore[union-attr]
    assert "exiting abruptly at sink_after_write" in crashing.log_tail(200)

    w = workers(env, "w")
    w.wait_ready()
    with conn.cursor() as cur:
        conn.begin()
        cur.execute(f"UPDATE `{database}`.t SET n = n + 1 WHERE id < 50")
        cur.execute(f"UPDATE `{database}`.t SET id = id + 1000 WHERE id BETWEEN 50 AND 59")
        cur.execute(f"DELETE FROM `{database}`.t WHERE id BETWEEN 60 AND 69")
        cur.execute(f"DELETE FROM `{database}`.log WHERE msg = 'm1' LIMIT 1")
        cur.execute(f"UPDATE `{database}`.log SET n = 9 WHERE msg = 'm2' LIMIT 1")
        cur.execute(f"INSERT INTO `{database}`.log VALUES ('m3', 0), ('m3', 0)")
        conn.commit()

    def source_t() -> list[tuple[Any, ...]]:
        return source_rows(conn, f"`{database}`.t", ["id", "n"])

    copies = Counter(source_rows(conn, f"`{database}`.log", ["msg", "n"]))
    assert copies[("m3", "0")] == 5  # 3 seeded, 2 inserted: identical rows stay in the test
    wait_until_equal(
        source_t,
        lambda: target_rows(pg_url, "t", ["id", "n"]),
        timeout=60,
        on_timeout=w.log_tail,
    )
    wait_until_equal(
        lambda: sorted(source_rows(conn, f"`{database}`.log", ["msg", "n"])),
        lambda: sorted(target_rows(pg_url, "log", ["msg", "n"])),
        timeout=30,
        on_timeout=w.log_tail,
    )
    wait_until_equal(
        lambda: sorted(source_t()), lambda: _replayed_log(lite), timeout=30, on_timeout=w.log_tail
    )
    status = w.status()["sinks"]
    assert status["pg"]["dead_letters"] == 0 and status["changes"]["dead_letters"] == 0
    logged = w.log_tail(5000)
    assert "was recreated" not in logged  # every stored offset's anchor matched
    assert "anchor verified" in logged  # the restarted worker resumed from stored offsets
