"""Re-snapshot on demand while streaming: a drifted key range of the target is repaired.

The target is damaged behind the pipeline's back (rows deleted, values changed) inside and outside
a key range; a token-protected POST asks the source job to read that range again. Afterwards the
range equals the source again, the damage outside it is still there (only the range was read),
and changes made meanwhile still flow.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB
from tests.support.compare import source_rows, target_rows, wait_until_equal
from tests.support.pipeline import pg_pipeline, worker_env
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

COLUMNS = ["id", "n", "label"]
TOKEN = "s3cret-token"


def _post(w: WorkerProcess, body: Any, token: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        w.url + "/sluice/resnapshot", json.dumps(body).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_resnapshot_repairs_a_key_range(
    broker: EmbeddedBroker,
    mariadb: PrivateMariaDB,
    pg_url: str,
    unique: str,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    database = f"rs_{unique}"
    src = f"`{database}`.items"
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(f"CREATE TABLE {src} (id INT PRIMARY KEY, n INT, label VARCHAR(20))")
        seed = [(i, i) for i in range(1, 201)]
        cur.executemany(f"INSERT INTO {src} VALUES (%s, %s, 'seed')", seed)
    env = {
        **worker_env(broker, pg_pipeline(tmp_path, mariadb, database, unique, pg_url), unique),
        "SLUICE_ADMIN_TOKEN": TOKEN,
    }
    w = workers(env)
    w.wait_ready()

    def source() -> list[tuple[object, ...]]:
        return source_rows(conn, src, COLUMNS)

    def target() -> list[tuple[object, ...]]:
        return target_rows(pg_url, "items", COLUMNS)

    wait_until_equal(source, target, timeout=120, on_timeout=w.log_tail)

    # Drift behind the pipeline's back: inside the range 50..100 and outside it (id 150).
    engine = sa.create_engine(pg_url)
    with engine.begin() as pg:
        pg.execute(sa.text("DELETE FROM items WHERE id BETWEEN 50 AND 80"))
        pg.execute(sa.text("UPDATE items SET label = 'drift' WHERE id BETWEEN 90 AND 95"))
        pg.execute(sa.text("UPDATE items SET label = 'drift' WHERE id = 150"))
    engine.dispose()

    body = {"source": "shop", "table": f"{database}.items", "from": [50], "to": [100]}
    assert _post(w, body, None)[0] == 401
    assert _post(w, body, "wrong")[0] == 401
    code, answer = _post(w, {**body, "source": "nope"}, TOKEN)
    assert code == 400 and "unknown source" in answer["error"]
    code, answer = _post(w, body, TOKEN)
    assert code == 202, answer

    # Streaming goes on meanwhile.
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {src} VALUES (500, 500, 'after')")
        cur.execute(f"UPDATE {src} SET n = -n WHERE id = 60")

    def expected() -> list[tuple[object, ...]]:
        return [r if r[0] != "150" else (r[0], r[1], "drift") for r in source()]

    wait_until_equal(expected, target, timeout=90, on_timeout=w.log_tail)
    job = w.status()["jobs"]["shop"]
    assert job["on_demand"]["state"] == "done", job
    assert job["on_demand"]["rows"] == 51, job  # ids 50..100, read once
