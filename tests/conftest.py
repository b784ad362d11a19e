"""Shared services, started once per test run: embedded broker, private MariaDB with binlog,
a fresh PostgreSQL database. Nothing here is mocked; tests that need none of them stay fast."""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from devstack.postgres import create_database, drop_database
from sources.mysql import SourceAddress
from tests.support.worker import WorkerProcess

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sluice-run")


@pytest.fixture(scope="session")
def broker(run_dir: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=run_dir / "broker.log") as b:
        yield b


@pytest.fixture(scope="session")
def mariadb(run_dir: Path) -> Iterator[PrivateMariaDB]:
    db = PrivateMariaDB(run_dir / "mariadb", server_id=1)
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_database("sluice_test")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def unique() -> str:
    """A name unique in this test run: app ids, topic prefixes, databases."""
    return f"t{os.getpid()}x{next(_ids)}x{uuid.uuid4().hex[:6]}"


@pytest.fixture
def source_conn(mariadb: PrivateMariaDB, unique: str) -> Iterator[pymysql.connections.Connection]:
    """A connection to the private MariaDB with a fresh database named ``unique`` (dropped at
    the end)."""
    conn = SourceAddress(mariadb.host, mariadb.port, mariadb.user, mariadb.password).connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{unique}`")
    try:
        yield conn
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{unique}`")
        conn.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``faust -A app worker`` processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], name: str = "w1") -> WorkerProcess:
        w = WorkerProcess(env, tmp_path / name, name).start()
        started.append(w)
        return w

    yield start
    for w in started:
        with contextlib.suppress(AssertionError):  # a hung worker is killed by stop()
            w.stop(timeout=30)
