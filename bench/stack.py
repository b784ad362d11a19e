"""The services a benchmark run owns: embedded broker, private MariaDB, a PostgreSQL database,
worker processes and load processes; all stopped by ``close()``, whatever happened before."""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.procs import (
    MemorySampler,
    Worker,
    child_pids,
    cpu_s,
    load_embedded_broker,
    system_cpu,
)
from devstack.mariadb import PrivateMariaDB
from devstack.postgres import create_database, drop_database

# Tuned for a write-heavy benchmark source, not for durability (the pipeline does not care):
# without them 1,000 single-row commits per second would wait on fsync, not on the pipeline.
MARIADB_ARGS = (
    "--innodb-buffer-pool-size=512M",
    "--innodb-flush-log-at-trx-commit=2",
    "--sync-binlog=0",
    "--max-connections=200",
)
JOB = "bench"
JOB_STARTS = f"source job {JOB} starts here"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Analyzer(threading.Thread):
    """``ANALYZE`` of the target database every ``interval`` seconds: what autovacuum does on a
    normal server, for a server that runs with ``autovacuum = off`` (as the local one does)."""

    def __init__(self, dsn: str, interval: float) -> None:
        super().__init__(daemon=True, name="bench-analyze")
        self.dsn, self.interval = dsn, interval
        self.halt = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                    conn.execute("SET statement_timeout = '60s'")
                    conn.execute("ANALYZE")
                self.runs += 1
            except psycopg.Error as exc:
                log(f"ANALYZE failed: {exc}")


class Stack:
    def __init__(
        self, out: Path, worker_env: dict[str, str], keep: bool, sink_group: bool = False
    ) -> None:
        self.out = out
        # Sinks in a worker group of their own (--sink-workers): the job's workers run sources
        # only, so the binlog reader and the SQL writer do not share a process and its GIL.
        self.sink_group = sink_group
        self.keep = keep
        self.extra_env = worker_env
        self.broker: Any = None
        self.db: PrivateMariaDB | None = None
        self.pg_url: str | None = None
        self.pg: psycopg.Connection[Any] | None = None
        self.workers: list[Worker] = []
        self.children: list[Any] = []
        self.mem = MemorySampler()
        self.mp = multiprocessing.get_context("spawn")
        self.app_id = f"bench{int(time.time()) % 1_000_000}"
        self.analyzer: Analyzer | None = None
        self.autovacuum: str | None = None

    # ------------------------------------------------------------------ services

    def start(self, analyze_every: float = 60) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.mem.start()
        broker_cls = load_embedded_broker()
        self.broker = broker_cls(log_path=self.out / "broker.log").start()
        self.mem.watch("broker", self.broker.pid)
        log(f"broker on {self.broker.bootstrap}")
        self.db = PrivateMariaDB(self.out / "mariadb", server_id=1, extra_args=MARIADB_ARGS)
        self.db.start()
        assert self.db.pid is not None
        self.mem.watch("mariadbd", self.db.pid)
        log(f"mariadb on port {self.db.port}")
        self.pg_url = create_database("sluice_bench")
        self.pg = psycopg.connect(self.pg_dsn, autocommit=True)
        log(f"postgres database {make_url(self.pg_url).database}")
        row = self.pg.execute("SHOW autovacuum").fetchone()
        self.autovacuum = str(row[0]) if row else None
        if self.autovacuum == "off" and analyze_every > 0:
            self.analyzer = Analyzer(self.pg_dsn, analyze_every)
            self.analyzer.start()
            log(f"autovacuum is off on this server: ANALYZE every {analyze_every:.0f}s instead")

    @property
    def mysql(self) -> dict[str, Any]:
        assert self.db is not None
        return dict(self.db.connection_kwargs)

    @property
    def pg_dsn(self) -> str:
        assert self.pg_url is not None
        return make_url(self.pg_url).set(drivername="postgresql").render_as_string(False)

    def pipeline_file(self) -> Path:
        assert self.db is not None
        path = self.out / "pipeline.yaml"
        path.write_text(
            f"""sources:
  - name: {JOB}
    kind: binlog
    url: mysql://root@127.0.0.1:{self.db.port}
    server_id: 4242
    tables: {{include: ["bench.orders"]}}
    snapshot: initial
    topic_prefix: {self.app_id}
sinks:
  - name: pg
    kind: sql
    source: {JOB}
    url: {self.pg_url}
    tables: {{include: ["bench.*"]}}
"""
        )
        return path

    def worker_env(self, role: str = "job") -> dict[str, str]:
        """A worker's settings; ``role`` is "job" (runs the source job, and the sink unless
        there is a sink group) or "sink" (the sink group)."""
        assert self.broker is not None
        env = {
            "SLUICE_BROKER_URL": self.broker.url,
            "SLUICE_EMBEDDED_BROKER": "true",
            "SLUICE_PIPELINE_FILE": str(self.pipeline_file()),
            "SLUICE_APP_ID": self.app_id,
            "SLUICE_SESSION_TIMEOUT_S": "6",
            "SLUICE_HEARTBEAT_INTERVAL_S": "1",
            **self.extra_env,
        }
        if role == "sink":
            env.update(
                SLUICE_APP_ID=f"{self.app_id}-sinks", SLUICE_RUN_SOURCES="false", SLUICE_SINKS="pg"
            )
        elif self.sink_group:
            env["SLUICE_SINKS"] = ""
        return env

    def start_worker(self, name: str, datadir: Path | None = None, role: str = "job") -> Worker:
        w = Worker(name, self.worker_env(role), self.out / "workers" / name, datadir, role)
        w.start()
        self.workers.append(w)
        self.mem.watch(name, w.pid)
        return w

    def alive_workers(self, role: str | None = "job") -> list[Worker]:
        """Live workers of ``role`` ("job" or "sink"; None: both)."""
        return [w for w in self.workers if w.alive and role in (None, w.role)]

    def stop_worker(self, w: Worker) -> None:
        self.mem.forget(w.name)
        code = w.stop()
        if code not in (0, None):
            log(f"worker {w.name} exited with {code}")

    def spawn(self, target: Any, *args: Any) -> Any:
        p = self.mp.Process(target=target, args=args, daemon=True)
        p.start()
        self.children.append(p)
        return p

    def job_runner(self) -> Worker | None:
        for w in self.alive_workers():
            job = w.job(JOB)
            if job and job.get("phase") == "streaming":
                return w
        return None

    def group_lag(self) -> dict[str, Any]:
        """Committed offsets of the app's consumer group against the end of each of its input
        topics (OffsetFetch through a consumer that does not join the group)."""
        import asyncio

        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def read(group: str) -> dict[str, Any]:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.broker.bootstrap,
                group_id=group,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await consumer.start()
            try:
                topics = sorted(
                    t
                    for t in await consumer.topics()
                    if t.startswith(self.app_id) and "changelog" not in t and "produce" not in t
                )
                tps = [
                    TopicPartition(t, p)
                    for t in topics
                    for p in sorted(consumer.partitions_for_topic(t) or ())
                ]
                ends = await consumer.end_offsets(tps)
                out: dict[str, Any] = {}
                for tp in tps:
                    out[f"{tp.topic}[{tp.partition}]"] = {
                        "committed": await consumer.committed(tp),
                        "end": ends[tp],
                    }
                return out
            finally:
                await consumer.stop()

        out: dict[str, Any] = {}
        # The sink group of --sink-workers has its own offsets (and delivery topic).
        for group in (self.app_id, f"{self.app_id}-sinks"):
            try:
                found = asyncio.run(asyncio.wait_for(read(group), 30))
            except Exception as exc:
                found = {"error": f"{type(exc).__name__}: {exc}"}
            if group == self.app_id:
                out.update(found)
            elif any(v.get("committed") is not None for v in found.values() if isinstance(v, dict)):
                out.update({f"{group}:{k}": v for k, v in found.items()})
        return out

    # ------------------------------------------------------------------ accounting

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: each live worker, broker, mariadbd, this database's PostgreSQL
        backends, and the whole machine."""
        out: dict[str, float] = {}
        for w in self.alive_workers(None):
            v = cpu_s(w.pid)
            if v is not None:
                out[w.name] = v
            # Its source job's binlog reader process (sources/reader_process.py), if any.
            kids = [c for c in map(cpu_s, child_pids(w.pid)) if c is not None]
            if kids:
                out[f"{w.name}/reader"] = sum(kids)
        for name, pid in (
            ("broker", self.broker.pid if self.broker else None),
            ("mariadbd", self.db.pid if self.db else None),
        ):
            if pid is not None and (v := cpu_s(pid)) is not None:
                out[name] = v
        if self.pg is not None:
            rows = self.pg.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).fetchall()
            for (pid,) in rows:
                if (v := cpu_s(pid)) is not None:
                    out[f"pg:{pid}"] = v
        busy, total = system_cpu()
        out["machine_busy"], out["machine_total"] = busy, total
        return out

    @staticmethod
    def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        d: dict[str, float] = {}
        for k, v in b.items():
            name = "postgres" if k.startswith("pg:") else k
            d[name] = d.get(name, 0.0) + v - a.get(k, 0.0)
        return d

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        if self.analyzer is not None:
            self.analyzer.halt.set()
            self.analyzer.join(70)
        for p in self.children:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        for w in self.workers:
            if w.alive:
                with contextlib.suppress(Exception):
                    w.stop(timeout=30)
            if w.alive:
                w.kill()
        self.mem.stop()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.close()
        if self.pg_url is not None and not self.keep:
            try:
                drop_database(self.pg_url)
            except Exception as exc:
                log(f"could not drop {self.pg_url}: {exc}")
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.stop()
            if self.db.running:
                self.db.kill()
            if not self.keep:
                shutil.rmtree(self.db.datadir, ignore_errors=True)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.stop()
