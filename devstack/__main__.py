"""``python -m devstack``: the whole pipeline on its embedded default, for a first run.

Starts the embedded broker, a private MariaDB with binlog holding a small sample shop with a
steady trickle of changes, and one ``faust -A app worker`` with its web view, writing into the
local PostgreSQL (or SQLite when there is none). Prints where to look; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from app.broker import EmbeddedBroker, port_is_free
from devstack.mariadb import PrivateMariaDB
from devstack.postgres import drop_database, ensure_database, postgres_available

REPO = Path(__file__).resolve().parents[1]

SCHEMA = [
    "CREATE DATABASE IF NOT EXISTS shop",
    """CREATE TABLE IF NOT EXISTS shop.customers (
        id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL,
        email VARCHAR(200), created_at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))""",
    """CREATE TABLE IF NOT EXISTS shop.orders (
        id BIGINT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL,
        status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
        amount DECIMAL(12,2) NOT NULL, items JSON, updated_at DATETIME(6))""",
]


def seed(db: PrivateMariaDB) -> None:
    conn = db.connect()
    with conn.cursor() as cur:
        for stmt in SCHEMA:
            cur.execute(stmt)
        cur.execute("SELECT COUNT(*) FROM shop.customers")
        if cur.fetchone()[0] == 0:
            cur.executemany(
                "INSERT INTO shop.customers (name, email) VALUES (%s, %s)",
                [(f"customer {i}", f"c{i}@example.com") for i in range(1, 21)],
            )
            cur.executemany(
                "INSERT INTO shop.orders (customer_id, amount, items, updated_at) "
                "VALUES (%s, %s, %s, NOW(6))",
                [(1 + i % 20, f"{10 + i}.50", f'["sku-{i}"]') for i in range(1, 101)],
            )
    conn.close()


class Trickle(threading.Thread):
    """A steady stream of inserts, updates and deletes on the sample shop."""

    def __init__(self, db: PrivateMariaDB, per_second: float) -> None:
        super().__init__(daemon=True, name="trickle")
        self.db, self.interval, self.changes = db, 1.0 / per_second, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = self.db.connect()
        rnd = random.Random(42)
        while not self.stopping.wait(self.interval):
            with conn.cursor() as cur:
                roll = rnd.random()
                if roll < 0.5:
                    cur.execute(
                        "INSERT INTO shop.orders (customer_id, amount, items, updated_at) "
                        "VALUES (%s, %s, %s, NOW(6))",
                        (rnd.randint(1, 20), f"{rnd.randint(1, 999)}.99", '["sku-x"]'),
                    )
                elif roll < 0.85:
                    cur.execute(
                        "UPDATE shop.orders SET status = %s, updated_at = NOW(6) "
                        "ORDER BY RAND() LIMIT 1",
                        (rnd.choice(["paid", "shipped", "cancelled"]),),
                    )
                else:
                    cur.execute("DELETE FROM shop.orders ORDER BY RAND() LIMIT 1")
            self.changes += 1
        conn.close()


def target_url(var: Path, fresh: bool) -> str:
    """The demo target; emptied when the source is new, so the two start out comparable."""
    if "SLUICE_TARGET_URL" in os.environ:
        return os.environ["SLUICE_TARGET_URL"]
    if postgres_available():
        url = ensure_database("sluice_demo")
        if fresh:
            drop_database(url)
            url = ensure_database("sluice_demo")
        return url
    db = var / "target.db"
    if fresh:
        db.unlink(missing_ok=True)
    return f"sqlite:///{db}"


def count(url: str, table: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one())
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def status(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sluice/status", timeout=3) as r:
            return dict(orjson.loads(r.read()))
    except OSError:
        return {}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--broker-port", type=int, default=9092)
    parser.add_argument("--mariadb-port", type=int, default=3307)
    parser.add_argument("--web-port", type=int, default=6066)
    parser.add_argument("--changes-per-second", type=float, default=5.0)
    parser.add_argument("--var", type=Path, default=REPO / "var", help="state directory")
    args = parser.parse_args()
    var: Path = args.var.resolve()
    var.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())

    fresh = not (var / "mariadb").exists()
    broker_port = args.broker_port if port_is_free("127.0.0.1", args.broker_port) else None
    broker = EmbeddedBroker(broker_port, log_path=var / "broker.log").start()
    db = PrivateMariaDB(var / "mariadb", port=args.mariadb_port, server_id=1).start()
    worker: subprocess.Popen[bytes] | None = None
    trickle = Trickle(db, args.changes_per_second)
    try:
        seed(db)
        target = target_url(var, fresh)
        env = {
            **os.environ,
            "SLUICE_BROKER_URL": broker.url,
            "SLUICE_EMBEDDED_BROKER": "true",
            "SLUICE_SOURCE_URL": f"mysql://root@127.0.0.1:{db.port}",
            "SLUICE_TARGET_URL": target,
            "SLUICE_SESSION_TIMEOUT_S": "10",
        }
        # A second worker needs the same settings: `. var/sluice.env` before starting it.
        shared = {k: v for k, v in env.items() if k.startswith("SLUICE_")}
        (var / "sluice.env").write_text("".join(f"export {k}='{v}'\n" for k, v in shared.items()))
        log = (var / "worker.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "app", "--datadir", str(var / "worker-data"),
             "worker", "-l", "info", "--web-host", "127.0.0.1", "--web-port", str(args.web_port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        print(
            "sluice is starting:\n"
            f"  status     http://127.0.0.1:{args.web_port}/sluice/status\n"
            f"  broker     {broker.url} (embedded, in memory; log {var / 'broker.log'})\n"
            f"  source     mysql://root@127.0.0.1:{db.port}/shop (private MariaDB, binlog on)\n"
            f"  target     {sa.engine.make_url(target).render_as_string(hide_password=True)}\n"
            f"  worker log {var / 'worker.log'}\n"
            "Another worker joins the group with:\n"
            f"  . {var / 'sluice.env'} && .venv/bin/faust -A app --datadir {var / 'w2'} worker "
            "--web-port 6067\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        trickle.start()
        while not stopping.wait(5):
            if worker.poll() is not None:
                print(f"worker exited with {worker.returncode}; see {var / 'worker.log'}")
                return 1
            s = status(args.web_port)
            job = s.get("jobs", {}).get("shop", {})
            sink = s.get("sinks", {}).get("target", {})
            print(
                f"ready={s.get('ready', False)} job={job.get('phase', '-')} "
                f"position={job.get('position', '-')} source changes={trickle.changes} "
                f"applied={sink.get('changes_applied', 0)} "
                f"target orders={count(target, 'orders')}",
                flush=True,
            )
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(OSError):  # the terminal's pipe may be gone after Ctrl-C
            print("stopping...", flush=True)
        trickle.stopping.set()
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        db.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
