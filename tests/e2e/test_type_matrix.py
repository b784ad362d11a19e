"""Every MySQL/MariaDB column type, with edge values, from MariaDB through the real pipeline
(snapshot rows, binlog inserts and binlog updates of the same values) into PostgreSQL, SQLite
and MariaDB targets at once, compared per type in the canonical form docs/TYPES.md describes.

Each value set (MIN, MAX, MISC, NULLS) is written four ways: as a snapshot row, as a snapshot
row that a binlog UPDATE later sets to it, as a binlog INSERT, and as a binlog UPDATE from
another value set. A value a target cannot hold exactly is asserted as its documented
difference (``expected``), never skipped.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.pipeline import sink, worker_env, write_pipeline
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

D = decimal.Decimal
EPOCH = dt.datetime(1970, 1, 1)

# name, column definition, kind (how docs/TYPES.md compares it)
COLUMNS: list[tuple[str, str, str]] = [
    ("ti", "TINYINT", "int"),
    ("tiu", "TINYINT UNSIGNED", "int"),
    ("si", "SMALLINT", "int"),
    ("siu", "SMALLINT UNSIGNED", "int"),
    ("mi", "MEDIUMINT", "int"),
    ("miu", "MEDIUMINT UNSIGNED", "int"),
    ("i", "INT", "int"),
    ("iu", "INT UNSIGNED", "int"),
    ("bi", "BIGINT", "int"),
    ("biu", "BIGINT UNSIGNED", "numeric"),
    ("b1", "TINYINT(1)", "int"),
    ("d65", "DECIMAL(65,30)", "numeric"),
    ("d12", "DECIMAL(12,2)", "numeric"),
    ("f", "FLOAT", "float"),
    ("dbl", "DOUBLE", "double"),
    ("bit1", "BIT(1)", "bit"),
    ("bit64", "BIT(64)", "numeric"),
    ("dd", "DATE", "date"),
    ("dz", "DATE", "date"),  # zero and partly zero dates
    ("dtm", "DATETIME(6)", "datetime"),
    ("dtz", "DATETIME(6)", "datetime"),  # zero and partly zero datetimes
    ("ts", "TIMESTAMP(6) NULL DEFAULT NULL", "datetime"),
    ("tsz", "TIMESTAMP(6) NULL DEFAULT NULL", "datetime"),  # the zero timestamp
    ("tm", "TIME(6)", "time"),
    ("tm0", "TIME", "time"),
    ("yr", "YEAR", "int"),
    ("ch", "CHAR(10)", "text"),
    ("vc", "VARCHAR(50)", "text"),
    ("tt", "TINYTEXT", "text"),
    ("tx", "TEXT", "text"),
    ("mt", "MEDIUMTEXT", "text"),
    ("lt", "LONGTEXT", "text"),
    ("bn", "BINARY(16)", "bytes"),
    ("vb", "VARBINARY(32)", "bytes"),
    ("tb", "TINYBLOB", "bytes"),
    ("bl", "BLOB", "bytes"),
    ("mb", "MEDIUMBLOB", "bytes"),
    ("lb", "LONGBLOB", "bytes"),
    ("en", "ENUM('a','b','c d','ü😀')", "text"),
    ("st", "SET('x','y','z','ü')", "text"),
    ("js", "JSON", "json"),
]
NAMES = [c[0] for c in COLUMNS]
KIND = {c[0]: c[2] for c in COLUMNS}

ALL_BYTES = bytes(range(256))
MIN: dict[str, Any] = {
    "ti": -128, "tiu": 0, "si": -32768, "siu": 0, "mi": -8388608, "miu": 0,
    "i": -2147483648, "iu": 0, "bi": -(2**63), "biu": 0, "b1": -128,
    "d65": "-" + "9" * 35 + "." + "9" * 30, "d12": "-9999999999.99",
    "f": -3.40282e38, "dbl": -1.7976931348623157e308, "bit1": 0, "bit64": 0,
    "dd": "1000-01-01", "dz": "0000-00-00",
    "dtm": "1000-01-01 00:00:00.000000", "dtz": "0000-00-00 00:00:00.000000",
    "ts": "1970-01-01 00:00:01.000000", "tsz": "0000-00-00 00:00:00.000000",
    "tm": "-838:59:59.000000", "tm0": "-838:59:59", "yr": 1901,
    "ch": "", "vc": "", "tt": "", "tx": "", "mt": "", "lt": "",
    "bn": b"\x01" + b"\x00" * 15, "vb": b"", "tb": b"", "bl": b"\x00", "mb": b"\x00\x00",
    "lb": b"",
    "en": "a", "st": "", "js": "{}",
}  # fmt: skip
MAX: dict[str, Any] = {
    "ti": 127, "tiu": 255, "si": 32767, "siu": 65535, "mi": 8388607, "miu": 16777215,
    "i": 2147483647, "iu": 4294967295, "bi": 2**63 - 1, "biu": 2**64 - 1, "b1": 127,
    "d65": "9" * 35 + "." + "9" * 30, "d12": "9999999999.99",
    "f": 3.40282e38, "dbl": 1.7976931348623157e308, "bit1": 1, "bit64": 2**64 - 1,
    "dd": "9999-12-31", "dz": "9999-12-31",
    "dtm": "9999-12-31 23:59:59.999999", "dtz": "2024-02-29 12:00:00.000001",
    "ts": "2038-01-19 03:14:07.999999", "tsz": "2038-01-19 03:14:07.000000",
    "tm": "838:59:59.000000", "tm0": "838:59:59", "yr": 2155,
    "ch": "😀" * 10, "vc": "ñ😀🎉" + "x" * 47, "tt": "😀" * 63, "tx": "é" * 32767,
    "mt": "é" * 40000, "lt": "😀" * 20000,
    "bn": b"\xff" * 16, "vb": b"\x00\xff" * 16, "tb": ALL_BYTES[:255], "bl": ALL_BYTES * 4,
    "mb": ALL_BYTES * 300, "lb": bytes(reversed(ALL_BYTES)) * 300,
    "en": "ü😀", "st": "x,y,z,ü", "js": '[1, "two", {"three": [3.5, null, true]}, []]',
}  # fmt: skip
MISC: dict[str, Any] = {
    "ti": -1, "tiu": 1, "si": -1, "siu": 1, "mi": -1, "miu": 1, "i": -1, "iu": 1,
    "bi": -1, "biu": 2**63, "b1": 1,
    "d65": "-0.000000000000000000000000000001", "d12": "-0.01",
    "f": 1.17549e-38, "dbl": 2.2250738585072014e-308, "bit1": 1, "bit64": 2**63 + 1,
    "dd": "1969-07-20", "dz": "2020-00-00",
    "dtm": "2024-01-02 03:04:05.123456", "dtz": "2020-01-00 10:00:00.000000",
    "ts": "2024-01-02 03:04:05.000001", "tsz": None,
    "tm": "-00:00:01.500000", "tm0": "00:00:00", "yr": 0,
    "ch": "a b", "vc": " lead and trail ", "tt": "\t\n\\'\"", "tx": "ütf8 😀 text",
    "mt": "x", "lt": "\x00nul inside",
    "bn": b"\x00" * 16, "vb": b"\x00", "tb": b"\x00\xff\x00", "bl": b"\xc3\x28",
    "mb": b"\x80", "lb": b"\xff\xfe\x00\x00",
    "en": "c d", "st": "z,x", "js": '{"ünï": "😀", "n": {"m": {"k": [1, {"deep": "v"}]}}}',
}  # fmt: skip
NULLS: dict[str, Any] = dict.fromkeys(NAMES)
SETS = {"MIN": MIN, "MAX": MAX, "MISC": MISC, "NULLS": NULLS}

# id → value set the row ends with, and how it gets there.
SNAPSHOT_ROWS = {1: "MIN", 2: "MAX", 3: "MISC", 4: "NULLS"}  # snapshot only
SNAPSHOT_THEN_UPDATED = {21: ("NULLS", "MIN"), 22: ("NULLS", "MAX"), 23: ("NULLS", "MISC"),
                         24: ("MIN", "NULLS"), 31: ("MAX", "MIN"), 32: ("MISC", "MAX"),
                         33: ("MIN", "MISC")}  # fmt: skip
BINLOG_INSERTS = {11: "MIN", 12: "MAX", 13: "MISC", 14: "NULLS"}
BINLOG_INSERTED_THEN_UPDATED = {41: ("MAX", "MIN"), 42: ("MISC", "MAX"), 43: ("MIN", "MISC"),
                                44: ("MISC", "NULLS")}  # fmt: skip
FINAL = {
    **SNAPSHOT_ROWS,
    **{k: v[1] for k, v in SNAPSHOT_THEN_UPDATED.items()},
    **BINLOG_INSERTS,
    **{k: v[1] for k, v in BINLOG_INSERTED_THEN_UPDATED.items()},
}


# --- the canonical comparison (docs/TYPES.md, "How the test compares") -----------------------


def _zero_date(v: Any) -> bool:
    # PyMySQL gives a date it cannot represent (0000-00-00, 2020-00-00) back as its text.
    return isinstance(v, str | bytes)


def canonical_source(name: str, v: Any, dialect: str, rid: int = 0) -> Any:
    """The value a target of ``dialect`` must hold for the source value ``v`` (SELECTed)."""
    kind = KIND[name]
    if v is None:
        return None
    if kind in ("date", "datetime"):
        if _zero_date(v):
            return None  # documented: zero and partly zero dates become NULL
        if name in ("ts", "tsz") and v <= EPOCH:
            return None
        return v.isoformat() if kind == "date" else dt.datetime.fromisoformat(str(v)).isoformat()
    if kind == "numeric":
        n = D(int.from_bytes(v, "big")) if isinstance(v, bytes) else D(v)
        # documented: SQLite keeps NUMERIC as INTEGER (64-bit) or REAL (a double)
        return repr(float(n)) if dialect == "sqlite" and not _int64(n) else str(n.normalize())
    if kind == "bit":
        return int.from_bytes(v, "big")
    if kind == "float":
        return float(f"{v:.6g}")
    if kind == "time":
        return v  # a timedelta
    if kind == "bytes":
        return bytes(v)
    if kind == "text" and dialect == "postgresql":
        return v.replace("\x00", "\ufffd")  # documented: PostgreSQL text cannot hold U+0000
    return v


def _int64(n: decimal.Decimal) -> bool:
    return n == n.to_integral_value() and -(2**63) <= n < 2**63


def canonical_target(name: str, v: Any, dialect: str) -> Any:
    """The target's value (raw, from a plain SELECT) in the form canonical_source gives."""
    kind = KIND[name]
    if v is None:
        return None
    if kind == "date":
        return v if isinstance(v, str) else v.isoformat()  # SQLite: ISO text
    if kind == "datetime":
        if isinstance(v, str):  # SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff'
            v = dt.datetime.fromisoformat(v)
        return v.isoformat()
    if kind == "numeric":
        if dialect == "sqlite":
            n = D(v) if isinstance(v, int) else D(repr(v))
            return repr(v) if isinstance(v, float) and not _int64(n) else str(n.normalize())
        return str(D(v).normalize())
    if kind == "float":
        return float(f"{v:.6g}")
    if kind == "time":
        if isinstance(v, str):  # SQLite: SQLAlchemy's Interval is a DATETIME after the epoch
            return dt.datetime.fromisoformat(v) - EPOCH
        return v
    if kind == "bytes":
        return bytes(v)
    if kind == "int" and isinstance(v, bool):
        return int(v)
    return v


# --- the test --------------------------------------------------------------------------------


def _insert(cur: Any, table: str, rid: int, values: dict[str, Any]) -> None:
    cols = ", ".join(f"`{n}`" for n in NAMES)
    marks = ", ".join(["%s"] * (len(NAMES) + 1))
    cur.execute(
        f"INSERT INTO {table} (id, {cols}) VALUES ({marks})", [rid, *(values[n] for n in NAMES)]
    )


def _update(cur: Any, table: str, rid: int, values: dict[str, Any]) -> None:
    sets = ", ".join(f"`{n}` = %s" for n in NAMES)
    cur.execute(f"UPDATE {table} SET {sets} WHERE id = %s", [*(values[n] for n in NAMES), rid])


def _rows(url: str) -> dict[int, dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("m"):
                return {}
            q = conn.dialect.identifier_preparer.quote
            cols = ", ".join(q(n) for n in ["id", *NAMES])
            rows = conn.execute(sa.text(f"SELECT {cols} FROM {q('m')}")).all()
            return {r[0]: dict(zip(NAMES, r[1:], strict=True)) for r in rows}
    finally:
        engine.dispose()


def test_every_type_round_trips_to_postgres_sqlite_and_mariadb(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    assert set(MIN) == set(MAX) == set(MISC) == set(NAMES)
    database, target_db = f"types_{unique}", f"ttgt_{unique}"
    src = f"`{database}`.m"
    conn = mariadb.connect(autocommit=True)
    with conn.cursor() as cur:
        # Zero dates need a sql_mode without NO_ZERO_DATE/NO_ZERO_IN_DATE (MariaDB's default has
        # neither); TIMESTAMP values are given and read in UTC.
        cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00'")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"CREATE DATABASE `{target_db}` CHARACTER SET utf8mb4")
        cols = ", ".join(f"`{n}` {ddl}" for n, ddl, _ in COLUMNS)
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, {cols}) CHARACTER SET utf8mb4")
        for rid, name in SNAPSHOT_ROWS.items():
            _insert(cur, src, rid, SETS[name])
        for rid, (first, _) in SNAPSHOT_THEN_UPDATED.items():
            _insert(cur, src, rid, SETS[first])

    lite = f"sqlite:///{tmp_path / 'lite.db'}"
    maria = f"mysql+pymysql://root@127.0.0.1:{mariadb.port}/{target_db}?charset=utf8mb4"
    targets = {"postgresql": pg_url, "sqlite": lite, "mysql": maria}
    pipeline = write_pipeline(
        tmp_path, mariadb, database, unique,
        [sink("pg", pg_url), sink("lite", lite), sink("maria", maria)],
    )  # fmt: skip
    w = workers(worker_env(broker, pipeline, unique), "w")
    w.wait_ready()

    # The binlog changes come after every target has its snapshot rows.
    snap_ids = {*SNAPSHOT_ROWS, *SNAPSHOT_THEN_UPDATED}
    deadline = time.monotonic() + 60
    while not all(snap_ids <= set(_rows(url)) for url in targets.values()):
        assert time.monotonic() < deadline, "snapshot rows missing\n" + w.log_tail()
        time.sleep(0.5)

    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00'")
        for rid, (_, then) in SNAPSHOT_THEN_UPDATED.items():
            _update(cur, src, rid, SETS[then])
        for rid, name in BINLOG_INSERTS.items():
            _insert(cur, src, rid, SETS[name])
        conn.begin()  # inserted and updated in one transaction, and again in two
        for rid, (first, _) in list(BINLOG_INSERTED_THEN_UPDATED.items())[:2]:
            _insert(cur, src, rid, SETS[first])
            _update(cur, src, rid, SETS[BINLOG_INSERTED_THEN_UPDATED[rid][1]])
        conn.commit()
        for rid, (first, then) in list(BINLOG_INSERTED_THEN_UPDATED.items())[2:]:
            _insert(cur, src, rid, SETS[first])
            _update(cur, src, rid, SETS[then])

    source = _source_rows(conn, src)
    assert sorted(source) == sorted(FINAL)
    failures = _compare_until_equal(source, targets, timeout=60)
    assert not failures, (
        "\n".join(failures[:60]) + f"\n({len(failures)} differences)\n" + (w.log_tail())
    )
    status = w.status()
    assert all(status["sinks"][s]["dead_letters"] == 0 for s in ("pg", "lite", "maria")), status


def _source_rows(conn: pymysql.connections.Connection, table: str) -> dict[int, dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00'")
        cols = ", ".join(f"`{n}`" for n in NAMES)
        cur.execute(f"SELECT id, {cols} FROM {table}")
        return {r[0]: dict(zip(NAMES, r[1:], strict=True)) for r in cur.fetchall()}


def _differences(source: dict[int, dict[str, Any]], targets: dict[str, str]) -> list[str]:
    out: list[str] = []
    for dialect, url in targets.items():
        rows = _rows(url)
        if sorted(rows) != sorted(source):
            out.append(f"{dialect}: ids {sorted(rows)} != {sorted(source)}")
            continue
        for rid, row in sorted(source.items()):
            for name in NAMES:
                want = canonical_source(name, row[name], dialect, rid)
                got = canonical_target(name, rows[rid][name], dialect)
                if want != got or type(want) is not type(got):
                    out.append(
                        f"{dialect} id={rid} ({FINAL[rid]}) {name} {KIND[name]}: "
                        f"want {_short(want)} got {_short(got)}"
                    )
    return out


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) < 90 else r[:80] + f"…({len(r)})"


def _compare_until_equal(
    source: dict[int, dict[str, Any]], targets: dict[str, str], timeout: float
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        failures = _differences(source, targets)
        if not failures or time.monotonic() > deadline:
            return failures
        time.sleep(1)
