"""devstack: private MariaDB (binlog settings, crash and restart), throw-away PG databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa

from devstack import mariadb as mariadb_module
from devstack.mariadb import MariaDBNotFoundError, PrivateMariaDB, find_mariadbd
from devstack.postgres import (
    admin_url,
    create_database,
    drop_database,
    postgres_available,
)

pytestmark = pytest.mark.integration


def _missing(what: str) -> None:
    """A missing service fails the test: scripts/setup.sh installs what the tests need."""
    pytest.fail(f"{what} is required (run scripts/setup.sh)")


@pytest.fixture(scope="module")
def private_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    try:
        find_mariadbd()
    except MariaDBNotFoundError:
        _missing("mariadbd (apt-get install mariadb-server)")
    db = PrivateMariaDB(tmp_path_factory.mktemp("private-mariadb"), server_id=4242)
    started = time.monotonic()
    db.start()
    print(f"first start (incl. mariadb-install-db): {time.monotonic() - started:.2f}s")
    try:
        yield db
    finally:
        db.stop()


def _query(db: PrivateMariaDB, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


def _master_status(db: PrivateMariaDB) -> tuple[str, int]:
    (row,) = _query(db, "SHOW MASTER STATUS")
    return str(row[0]), int(row[1])


def test_binlog_is_on_in_full_row_mode(private_db: PrivateMariaDB) -> None:
    rows = _query(
        private_db,
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
        "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'server_id')",
    )
    assert dict(rows) == {
        "log_bin": "ON",
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
        "binlog_row_metadata": "FULL",
        "server_id": "4242",
    }


def test_root_without_password_over_tcp(private_db: PrivateMariaDB) -> None:
    assert private_db.host == "127.0.0.1"
    assert private_db.user == "root"
    assert private_db.password == ""
    assert private_db.url == f"mysql+pymysql://root@127.0.0.1:{private_db.port}/"
    assert private_db.port != 3306
    [(user, datadir)] = _query(private_db, "SELECT CURRENT_USER(), @@datadir")
    assert user == "root@127.0.0.1"
    assert Path(datadir).resolve() == private_db.datadir.resolve()
    # The SQLAlchemy URL works as given.
    engine = sa.create_engine(private_db.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT @@log_bin")).scalar_one() == 1
    finally:
        engine.dispose()


def test_connect_is_autocommit_and_takes_a_database(private_db: PrivateMariaDB) -> None:
    with private_db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS devstack_ac")
    with private_db.connect("devstack_ac") as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE(), @@autocommit")
        assert cur.fetchone() == ("devstack_ac", 1)


def test_a_write_advances_the_binlog(private_db: PrivateMariaDB) -> None:
    file_before, pos_before = _master_status(private_db)
    logs = {str(name) for name, *_ in _query(private_db, "SHOW BINARY LOGS")}
    assert file_before in logs
    with private_db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS devstack_w")
        cur.execute("CREATE TABLE IF NOT EXISTS devstack_w.t (id INT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO devstack_w.t VALUES (1, 'one'), (2, 'two')")
    file_after, pos_after = _master_status(private_db)
    assert (file_after, pos_after) > (file_before, pos_before)
    # The insert is logged as a row event.
    events = _query(private_db, f"SHOW BINLOG EVENTS IN '{file_after}'")
    assert any(row[2] == "Write_rows_v1" for row in events), events


def test_kill_then_start_keeps_data_and_port(private_db: PrivateMariaDB) -> None:
    with private_db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS devstack_k")
        cur.execute("CREATE TABLE IF NOT EXISTS devstack_k.t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO devstack_k.t VALUES (1), (2), (3)")
    port, old_pid = private_db.port, private_db.pid
    logs_before = len(_query(private_db, "SHOW BINARY LOGS"))

    private_db.kill()
    assert not private_db.running
    assert private_db.pid is None
    with pytest.raises(pymysql.err.OperationalError):
        private_db.connect(connect_timeout=2)

    started = time.monotonic()
    private_db.start()
    print(f"start after SIGKILL (crash recovery): {time.monotonic() - started:.2f}s")
    assert private_db.running
    assert private_db.pid != old_pid
    assert private_db.port == port
    assert _query(private_db, "SELECT id FROM devstack_k.t ORDER BY id") == [(1,), (2,), (3,)]
    # A restart opens a new binlog file; the server is writable again.
    assert len(_query(private_db, "SHOW BINARY LOGS")) > logs_before
    with private_db.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO devstack_k.t VALUES (4)")
    assert _query(private_db, "SELECT @@log_bin") == [(1,)]


def test_clean_stop_and_start_is_fast(private_db: PrivateMariaDB) -> None:
    started = time.monotonic()
    private_db.stop()
    stopped = time.monotonic()
    assert not private_db.running
    private_db.stop()  # idempotent
    private_db.start()
    restarted = time.monotonic()
    print(f"clean stop: {stopped - started:.2f}s, start: {restarted - stopped:.2f}s")
    assert stopped - started < 30
    assert restarted - stopped < 30
    assert private_db.start() is private_db  # already running: no-op
    assert _query(private_db, "SELECT COUNT(*) FROM devstack_k.t") == [(4,)]


def test_context_manager_and_own_datadir(tmp_path: Path) -> None:
    try:
        find_mariadbd()
    except MariaDBNotFoundError:
        _missing("mariadbd")
    with PrivateMariaDB(tmp_path / "cm", server_id=7) as db:
        assert db.running
        assert (tmp_path / "cm" / "data" / "mysql").is_dir()
        assert _query(db, "SELECT @@server_id") == [(7,)]
    assert not db.running
    assert not db.pid_file.exists()  # removed by a clean shutdown


def test_find_mariadbd_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_MARIADBD", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(mariadb_module, "_SEARCH_DIRS", ("/nonexistent",))
    with pytest.raises(MariaDBNotFoundError, match="apt-get install mariadb-server"):
        find_mariadbd()


@pytest.fixture
def pg() -> None:
    if not postgres_available():
        _missing(f"PostgreSQL at {admin_url()}")


def _pg_database_exists(name: str) -> bool:
    engine = sa.create_engine(admin_url().replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            return found is not None
    finally:
        engine.dispose()


def test_postgres_create_use_and_drop_database(pg: None) -> None:
    url = create_database("Devstack Test")
    parsed = sa.make_url(url)
    name = parsed.database
    assert parsed.drivername == "postgresql+psycopg"
    assert name is not None
    assert name.startswith("devstack_test_")
    assert _pg_database_exists(name)

    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "things", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text)
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 2

    # The engine's pool still holds a session: drop_database ends it.
    drop_database(url)
    assert not _pg_database_exists(name)
    engine.dispose()
    drop_database(url)  # already gone: no error


def test_postgres_drop_refuses_the_admin_database(pg: None) -> None:
    with pytest.raises(ValueError, match="refusing"):
        drop_database("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
