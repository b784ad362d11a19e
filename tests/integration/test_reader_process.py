"""The binlog reader in a child process against a real MariaDB binlog.

It must hand out exactly what the in-thread reader hands out, in order, with one schema object
per table shape; raise the reader's failures in the caller; end when stopped; and report a child
that died instead of waiting forever.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from typing import Any

import pymysql
import pytest

from devstack.mariadb import PrivateMariaDB
from sources.binlog import BinlogReader, RowChange, connection_settings
from sources.mysql import SourceAddress, current_position
from sources.position import BinlogPosition
from sources.reader_process import ReaderProcess
from tests.support.reader import read_until, run_reader

pytestmark = pytest.mark.integration


def _in_database(database: str, db: str, _table: str) -> bool:
    return db == database  # module level: the child process unpickles it


def _make(kind: type, db: PrivateMariaDB, database: str, start: BinlogPosition) -> Any:
    return kind(
        connection_settings(db.host, db.port, db.user, db.password),
        4243,
        start,
        functools.partial(_in_database, database),
        50,
    )


def test_the_process_hands_out_what_the_thread_reader_does(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    t = f"`{unique}`.t"
    with source_conn.cursor() as cur:
        start = current_position(source_conn)
        cur.execute(
            f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, d DECIMAL(12,2), at DATETIME(6), "
            "j JSON, s SET('a','b'), b BLOB)"
        )
        for i in range(300):
            cur.execute(
                f"INSERT INTO {t} VALUES (%s, %s, NOW(6), %s, %s, %s)",
                (i, f"{i}.25", '{"k": [1, 2]}', "a,b" if i % 2 else "", bytes([i % 256, 0])),
            )
        cur.execute(f"UPDATE {t} SET d = d + 1 WHERE id < 120")  # one transaction, 3 parts
        cur.execute(f"DELETE FROM {t} WHERE id % 7 = 0")
        cur.execute(f"ALTER TABLE {t} ADD COLUMN extra INT")
        cur.execute(f"INSERT INTO {t} (id, extra) VALUES (1000, 5)")
        end = current_position(source_conn)

    threaded = read_until(_make(BinlogReader, mariadb, unique, start), end)
    forked = read_until(_make(ReaderProcess, mariadb, unique, start), end)

    assert forked == threaded
    assert sum(isinstance(c, RowChange) for t in forked for c in t.changes) == 300 + 120 + 43 + 1
    schemas = [c.schema for t in forked for c in t.changes if isinstance(c, RowChange)]
    assert len({id(s) for s in schemas}) == 2  # one object per shape: before and after ALTER


def test_a_failure_of_the_reader_is_raised_in_the_caller(mariadb: PrivateMariaDB) -> None:
    missing = BinlogPosition.at("binlog.999999", 4)
    failure = run_reader(_make(ReaderProcess, mariadb, "x", missing), lambda _t: None, 60)
    assert len(failure) == 1
    # The server's own error, as the in-thread reader raises it (ER_MASTER_FATAL_ERROR_READING).
    assert isinstance(failure[0], pymysql.err.OperationalError)
    assert failure[0].args[0] == 1236


def test_stop_ends_the_reader_and_its_process(mariadb: PrivateMariaDB, unique: str) -> None:
    with SourceAddress(mariadb.host, mariadb.port, mariadb.user, mariadb.password).connect() as c:
        start = current_position(c)
    reader = _make(ReaderProcess, mariadb, unique, start)
    threading.Timer(2.0, reader.stop).start()
    began = time.monotonic()
    assert run_reader(reader, lambda _t: None, 30) == []
    assert time.monotonic() - began < 10
    assert not reader._process.is_alive()


def test_a_child_that_dies_is_an_error_not_a_hang(mariadb: PrivateMariaDB, unique: str) -> None:
    with SourceAddress(mariadb.host, mariadb.port, mariadb.user, mariadb.password).connect() as c:
        start = current_position(c)
    reader = _make(ReaderProcess, mariadb, unique, start)

    def kill() -> None:
        while reader._process is None or not reader._process.pid:
            time.sleep(0.05)
        time.sleep(1.0)
        os.kill(reader._process.pid, signal.SIGKILL)

    threading.Thread(target=kill).start()
    failure = run_reader(reader, lambda _t: None, 30)
    assert len(failure) == 1 and "exit code -9" in str(failure[0])
