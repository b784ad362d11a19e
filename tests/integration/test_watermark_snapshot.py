"""The watermark snapshot on the private MariaDB: chunk rows reconciled with the binlog changes
committed between the SELECT and the high watermark (made by a hook, so deterministically).

Each chunk must hold, at its high watermark H, exactly the source rows of its key range; and
the chunks merged by position (later wins) must equal the source table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from app.errors import TransientError
from devstack.mariadb import PrivateMariaDB
from sources.mysql import SourceAddress
from sources.schema import load_schema
from sources.snapshot import ConsistentSnapshot, SnapshotChunk, open_snapshot
from sources.values import row_normaliser
from sources.watermark_snapshot import WatermarkSnapshot, binlog_end

pytestmark = pytest.mark.integration

_seq = itertools.count(1)


def _address(db: PrivateMariaDB) -> SourceAddress:
    return SourceAddress(db.host, db.port, db.user, db.password)


@pytest.fixture
def conn(mariadb: PrivateMariaDB) -> Iterator[pymysql.connections.Connection]:
    c = _address(mariadb).connect()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def database(conn: pymysql.connections.Connection, unique: str) -> Iterator[str]:
    name = f"wm_{unique}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{name}`")


def _run(conn: pymysql.connections.Connection, *sql: str) -> None:
    with conn.cursor() as cur:
        for s in sql:
            cur.execute(s)


def _rows(conn: pymysql.connections.Connection, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, n, label FROM {table} ORDER BY id, n, label")
        return [tuple(r) for r in cur.fetchall()]


def _tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((r["id"], r["n"], r["label"]) for r in rows)


def _read(
    mariadb: PrivateMariaDB,
    database: str,
    table: str,
    chunk_rows: int,
    hooks: dict[int, Callable[[], None]] | None = None,
    after: list[Any] | None = None,
) -> list[SnapshotChunk]:
    """Every chunk of a table; ``hooks[i]`` runs between chunk i's SELECT and its H."""
    address = _address(mariadb)
    selects = itertools.count()

    def on_selected() -> None:
        hook = (hooks or {}).get(next(selects))
        if hook is not None:
            hook()

    schema_conn = address.connect()
    try:
        schema = load_schema(schema_conn, database, table)
    finally:
        schema_conn.close()
    assert schema is not None
    snap = WatermarkSnapshot(address, 60000 + next(_seq), on_selected)
    try:
        return list(snap.read(schema, chunk_rows, after, row_normaliser(schema.columns)))
    finally:
        snap.close()


def _merged(chunks: list[SnapshotChunk]) -> list[tuple[Any, ...]]:
    """The state the chunks give: per key, the row of the chunk with the newest position."""
    best: dict[Any, tuple[Any, dict[str, Any]]] = {}
    for chunk in chunks:
        for row in chunk.rows:
            held = best.get(row["id"])
            if held is None or held[0] <= chunk.position:
                best[row["id"]] = (chunk.position, row)
    return _tuples([row for _, row in best.values()])


def test_changes_between_select_and_high_mark_are_reconciled(
    mariadb: PrivateMariaDB, conn: pymysql.connections.Connection, database: str
) -> None:
    src = f"`{database}`.items"
    _run(conn, f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
    _run(conn, f"INSERT INTO {src} VALUES " + ",".join(f"({i}, 0, 'seed')" for i in range(1, 11)))
    writer = _address(mariadb).connect()
    first_chunk_at_h: list[tuple[Any, ...]] = []

    def churn_first_chunk() -> None:
        _run(
            writer,
            f"UPDATE {src} SET n = 7, label = 'upd' WHERE id = 2",  # in the chunk
            f"DELETE FROM {src} WHERE id = 3",  # in the chunk
            f"UPDATE {src} SET id = 50 WHERE id = 4",  # moves out of the chunk
            f"INSERT INTO {src} VALUES (0, 1, 'new')",  # new, inside the chunk's range
            f"UPDATE {src} SET n = 9 WHERE id = 8",  # a later chunk's key
            f"INSERT INTO {src} VALUES (100, 1, 'beyond')",  # beyond the last key
            # A transaction whose rows cancel out: both changes are in the window.
            "BEGIN",
            f"INSERT INTO {src} VALUES (1000, 1, 'gone')",
            f"DELETE FROM {src} WHERE id = 1000",
            "COMMIT",
        )
        first_chunk_at_h.extend(r for r in _rows(writer, src) if r[0] <= 4)

    try:
        chunks = _read(mariadb, database, "items", 4, {0: churn_first_chunk})
    finally:
        writer.close()
    # The SELECT read 1..4; at H the range (-inf, 4] holds 0, 1 and 2 (changed), not 3 or 4.
    assert _tuples(chunks[0].rows) == first_chunk_at_h
    assert [r[0] for r in first_chunk_at_h] == [0, 1, 2]
    # The update, the delete, the moved key and the insert; not the changes of other ranges.
    assert chunks[0].reconciled == 4
    assert chunks[0].after == [4] and not chunks[0].last
    # Later chunks read after the churn (50 and 100 among them); the last one is open-ended.
    assert chunks[-1].last and chunks[-1].after is None
    assert {50, 100} <= {r["id"] for c in chunks[1:] for r in c.rows}
    assert _merged(chunks) == _rows(conn, src)
    positions = [c.position for c in chunks]
    assert positions == sorted(positions)


def test_high_mark_in_the_next_binlog_file(
    mariadb: PrivateMariaDB, conn: pymysql.connections.Connection, database: str
) -> None:
    src = f"`{database}`.items"
    _run(conn, f"CREATE TABLE {src} (id BIGINT PRIMARY KEY, n INT, label VARCHAR(20))")
    _run(conn, f"INSERT INTO {src} VALUES " + ",".join(f"({i}, 0, 'seed')" for i in range(1, 7)))
    writer = _address(mariadb).connect()
    low = binlog_end(writer)

    def rotate_between_changes() -> None:
        _run(writer, f"UPDATE {src} SET n = 1 WHERE id = 1")
        _run(writer, "FLUSH BINARY LOGS")
        _run(writer, f"UPDATE {src} SET n = 2 WHERE id = 2", f"DELETE FROM {src} WHERE id = 3")

    try:
        chunks = _read(mariadb, database, "items", 100, {0: rotate_between_changes})
    finally:
        writer.close()
    assert len(chunks) == 1 and chunks[0].last
    assert chunks[0].position.file_seq == low.file_seq + 1
    assert chunks[0].reconciled == 3
    assert _tuples(chunks[0].rows) == _rows(conn, src)


def test_string_keys_keep_every_change_of_the_window(
    mariadb: PrivateMariaDB, conn: pymysql.connections.Connection, database: str
) -> None:
    """Under a case-insensitive collation Python cannot tell a key's chunk: changes of keys in
    other chunks are kept too, with their state at H, and the merged result is still exact."""
    src = f"`{database}`.names"
    _run(
        conn,
        f"CREATE TABLE {src} (id VARCHAR(10) COLLATE utf8mb4_general_ci PRIMARY KEY, n INT, "
        "label VARCHAR(20))",
        f"INSERT INTO {src} VALUES ('a', 0, 's'), ('B', 0, 's'), ('c', 0, 's'), ('D', 0, 's')",
    )
    writer = _address(mariadb).connect()

    def churn() -> None:
        _run(writer, f"UPDATE {src} SET n = 5 WHERE id = 'd'", f"DELETE FROM {src} WHERE id='a'")
        _run(writer, f"INSERT INTO {src} VALUES ('Bb', 1, 'new')")

    try:
        chunks = _read(mariadb, database, "names", 2, {0: churn})
    finally:
        writer.close()
    # Chunk 0 read a, B; at H it holds B, and Bb and D as they are at H (other chunks' keys).
    assert sorted(r["id"] for r in chunks[0].rows) == ["B", "Bb", "D"]
    assert _merged(chunks) == sorted(_rows(conn, src))


def test_table_without_primary_key_is_one_reconciled_chunk(
    mariadb: PrivateMariaDB, conn: pymysql.connections.Connection, database: str
) -> None:
    src = f"`{database}`.bag"
    _run(conn, f"CREATE TABLE {src} (id INT, n INT, label VARCHAR(20))")
    _run(conn, f"INSERT INTO {src} VALUES (1, 0, 'x'), (1, 0, 'x'), (2, 0, 'y'), (3, 0, 'z')")
    writer = _address(mariadb).connect()

    def churn() -> None:
        _run(
            writer,
            f"DELETE FROM {src} WHERE id = 1 LIMIT 1",  # one of two identical rows
            f"UPDATE {src} SET n = 4 WHERE id = 2",
            f"INSERT INTO {src} VALUES (3, 0, 'z')",  # a second copy
        )

    try:
        chunks = _read(mariadb, database, "bag", 2, {0: churn})
    finally:
        writer.close()
    assert len(chunks) == 1 and chunks[0].last and chunks[0].after is None
    assert _tuples(chunks[0].rows) == _rows(conn, src)


def test_resume_after_a_committed_key_and_empty_table(
    mariadb: PrivateMariaDB, conn: pymysql.connections.Connection, database: str
) -> None:
    src = f"`{database}`.items"
    _run(conn, f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
    writer = _address(mariadb).connect()
    try:
        # An empty table is still one chunk: an insert in its window must not be lost.
        insert = {0: lambda: _run(writer, f"INSERT INTO {src} VALUES (5, 0, 'late')")}
        chunks = _read(mariadb, database, "items", 10, insert)
        assert [(_tuples(c.rows), c.last) for c in chunks] == [([(5, 0, "late")], True)]
        values = ",".join(f"({i}, 0, 's')" for i in range(6, 20))
        _run(writer, f"INSERT INTO {src} VALUES {values}")
        # Resuming after committed key [9] reads 10.. only; a change below it is not its concern.
        below = {0: lambda: _run(writer, f"UPDATE {src} SET n = 3 WHERE id = 6")}
        chunks = _read(mariadb, database, "items", 5, below, after=[9])
    finally:
        writer.close()
    assert [c.after for c in chunks] == [[14], [19], None]
    assert sorted(r["id"] for c in chunks for r in c.rows) == list(range(10, 20))
    assert chunks[0].reconciled == 0


def test_auto_method_is_consistent_on_mariadb(mariadb: PrivateMariaDB) -> None:
    auto = open_snapshot(_address(mariadb), "auto", 60999)
    forced = open_snapshot(_address(mariadb), "watermark", 60999)
    try:
        assert isinstance(auto, ConsistentSnapshot) and auto.method == "consistent"
        assert isinstance(forced, WatermarkSnapshot) and forced.method == "watermark"
    finally:
        auto.close()
        forced.close()


def test_window_is_exactly_the_changes_between_the_marks(
    mariadb: PrivateMariaDB,
    conn: pymysql.connections.Connection,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = f"`{database}`.items"
    _run(conn, f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
    other = f"`{database}`.other"
    _run(conn, f"CREATE TABLE {other} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
    low = binlog_end(conn)
    _run(conn, f"INSERT INTO {src} VALUES (1, 0, 'a')", f"INSERT INTO {other} VALUES (1, 0, 'x')")
    _run(conn, f"UPDATE {src} SET n = 1 WHERE id = 1")
    high = binlog_end(conn)
    _run(conn, f"DELETE FROM {src} WHERE id = 1")  # after the high mark
    schema = load_schema(conn, database, "items")
    assert schema is not None
    snap = WatermarkSnapshot(_address(mariadb), 60000 + next(_seq))
    try:
        window = snap.window(schema, low, high)
        assert [(c.op, c.table, (c.after or {}).get("n")) for c in window] == [
            ("c", "items", 0),
            ("u", "items", 1),
        ]
        # A high mark the dump cannot reach (yet) is retried, then a transient error.
        monkeypatch.setattr("sources.watermark_snapshot.WINDOW_ATTEMPTS", 2)
        beyond = high.__class__(high.file_seq, high.pos + 10**9, 0, high.file)
        with pytest.raises(TransientError, match="did not reach"):
            snap.window(schema, low, beyond)
    finally:
        snap.close()
