"""A large source transaction read from a real MariaDB binlog in parts, and resumed inside.

The reader must hand out a transaction larger than its limit in parts of at most that many
items, each part saying where to restart; a reader started at such a restart point must hand
out exactly the items not yet handed out, at the same positions (they derive from the binlog).
"""

from __future__ import annotations

import pymysql
import pytest

from devstack.mariadb import PrivateMariaDB
from sources.binlog import BinlogReader, RowChange, SourceTransaction, connection_settings
from sources.mysql import current_position
from sources.position import BinlogPosition
from tests.support.reader import read_until

pytestmark = pytest.mark.integration

ROWS = 2_500
PART = 400


def _read(
    db: PrivateMariaDB, database: str, start: BinlogPosition, until: BinlogPosition
) -> list[SourceTransaction]:
    """Everything the reader hands out from ``start`` up to the transaction ending at ``until``."""
    reader = BinlogReader(
        connection_settings(db.host, db.port, db.user, db.password),
        server_id=4242,
        start=start,
        wants=lambda d, _t: d == database,
        max_items=PART,
    )
    return read_until(reader, until)


def _placed(parts: list[SourceTransaction]) -> list[tuple[str, str, object]]:
    return [
        (t.item_position(k).key(), c.op, c.after["id"] if c.after else None)
        for t in parts
        for k, c in enumerate(t.changes)
        if isinstance(c, RowChange)
    ]


def test_a_large_transaction_is_read_in_parts_and_resumed_inside(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    table = f"`{unique}`.t"
    with source_conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20))")
        before = current_position(source_conn)
        cur.execute(f"INSERT INTO {table} VALUES (0, 'small')")  # a small one before
        source_conn.begin()
        cur.execute(f"INSERT INTO {table} SELECT seq, 'big' FROM `{unique}`.seq_1_to_{ROWS}")
        cur.execute(f"UPDATE {table} SET v = 'changed' WHERE id BETWEEN 1 AND 10")
        source_conn.commit()
        cur.execute(f"INSERT INTO {table} VALUES ({ROWS + 1}, 'small')")  # a small one after
        end = current_position(source_conn)

    first = _read(mariadb, unique, before, end)
    big = [t for t in first if t.anchor is not None]
    items = ROWS + 10
    assert [len(t.changes) for t in big] == [PART] * (items // PART) + [items % PART]
    assert [t.complete for t in big] == [False] * (items // PART) + [True]
    # The small transactions around it stay whole: placed at their commits.
    small = [t for t in first if t.anchor is None and t.changes]
    assert [len(t.changes) for t in small] == [1, 1]
    placed = _placed(first)
    assert [k for k, _, _ in placed] == sorted(k for k, _, _ in placed)
    assert len({k for k, _, _ in placed}) == len(placed)
    assert [i for _, op, i in placed if op == "c"] == list(range(ROWS + 2))

    # Restart inside the transaction, after its third part: the rest, exactly, in place.
    resume = big[2].resume_point()
    assert resume.row == 3 * PART and resume < big[-1].resume_point()
    again = _read(mariadb, unique, resume, end)
    assert _placed(big[:3]) + _placed(again) == _placed(big) + _placed(first[-1:])


def test_transactions_carry_the_servers_gtid(
    mariadb: PrivateMariaDB, source_conn: pymysql.connections.Connection, unique: str
) -> None:
    """Each transaction, whole or split, carries the GTID MariaDB gave it."""
    with source_conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{unique}`.g (id INT PRIMARY KEY)")
        start = current_position(source_conn)
        gtids = []
        for first, n in ((1, 100), (1000, PART + 100)):  # whole, then split in two parts
            cur.execute("BEGIN")
            cur.executemany(
                f"INSERT INTO `{unique}`.g VALUES (%s)", [(i,) for i in range(first, first + n)]
            )
            cur.execute("COMMIT")
            cur.execute("SELECT @@last_gtid")
            gtids.append(cur.fetchone()[0])
        until = current_position(source_conn)
    parts = [t for t in _read(mariadb, unique, start, until) if t.changes]
    assert {t.gtid for t in parts[:1]} == {gtids[0]}
    assert len(parts) == 3 and {t.gtid for t in parts[1:]} == {gtids[1]}
