"""The measured phases of a run, in order: baselines, snapshot, cdc, latency, soak, failover.

Each phase fills ``results`` (the keys of the final JSON line) and ``details`` (everything else
worth keeping), and ends by comparing the target with the source in canonical form.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench import baselines, failover_trace, load
from bench.dataset import (
    COLUMNS,
    SRC,
    TABLE,
    Churn,
    alive_ids,
    create_and_load,
    master_position,
    source_print,
    target_count,
    target_print,
)
from bench.procs import Worker
from bench.profile import PARTS, Recorder, split, top_functions
from bench.stack import JOB, JOB_STARTS, Stack, log
from tests.support.compare import source_rows, target_rows

BINLOG_BASELINE_SERVER_ID = 4343


class Phases:
    def __init__(self, stack: Stack, opts: Any) -> None:
        self.s = stack
        self.o = opts
        self.results: dict[str, Any] = {}
        self.details: dict[str, Any] = {}
        self.correct: dict[str, bool] = {}
        self.profiles: dict[str, Any] = {}
        self._rows: list[tuple[Any, ...]] | None = None
        self._conn: Any = None
        self._stops: list[Any] = []  # stop events of load processes, set before each phase

    @property
    def conn(self) -> Any:
        if self._conn is None:
            assert self.s.db is not None
            self._conn = self.s.db.connect()
        return self._conn

    # ------------------------------------------------------------------ helpers

    def equal(self, phase: str, timeout: float) -> bool:
        """Wait until the target equals the source, value by value; record the outcome."""
        deadline = time.monotonic() + timeout
        assert self.s.pg_url is not None
        while True:
            a = source_rows(self.conn, SRC, COLUMNS)
            b = target_rows(self.s.pg_url, TABLE, COLUMNS)
            if a == b:
                self.correct[phase] = True
                log(f"{phase}: target equals source ({len(a)} rows)")
                return True
            if time.monotonic() > deadline:
                only_a = sorted(set(a) - set(b))[:3]
                only_b = sorted(set(b) - set(a))[:3]
                self.correct[phase] = False
                self.details[f"{phase}_difference"] = {
                    "source_rows": len(a),
                    "target_rows": len(b),
                    "only_in_source": [str(r) for r in only_a],
                    "only_in_target": [str(r) for r in only_b],
                }
                log(f"{phase}: target differs from source after {timeout:.0f}s")
                return False
            time.sleep(2)

    def _check_workers(self) -> None:
        for w in self.s.workers:
            if w.proc is not None and w.proc.poll() is not None and not w.expected_exit:
                raise RuntimeError(f"worker {w.name} died:\n{w.log_tail()}")

    def _launch(self, names: list[str], phase: str) -> dict[str, Any]:
        """Start workers; wait until the job has started and every worker is ready.

        The profile and the CPU count begin when the job starts (it may start before its worker
        reports ready: the job runs as soon as its slot is assigned, recovery goes on after).
        """
        t_launch = time.time()
        ws = [self.s.start_worker(n) for n in names]
        if not self.s.alive_workers("sink"):
            ws += [
                self.s.start_worker(f"s{i + 1}-{phase}", role="sink")
                for i in range(self.o.sink_workers)
            ]
        run: dict[str, Any] = {
            "workers": ws,
            "t_job": None,
            "rec": None,
            "cpu0": None,
            "timeline": [],
        }
        deadline = time.monotonic() + 240
        while run["t_job"] is None or not all(w.ready_at for w in ws):
            self._check_workers()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{phase}: job not started or workers not ready in 240 s")
            if run["t_job"] is None:
                for w in ws:
                    t = w.log_time(JOB_STARTS)
                    if t is not None and t >= t_launch - 1:
                        run["t_job"], run["runner"] = t, w
                        run["rec"] = self._profile_start(phase, w)
                        run["cpu0"] = self.s.cpu()
                        break
            for w in ws:
                if not w.ready_at:
                    w.healthy()
            tl = run["timeline"]
            if run["t_job"] is not None and (
                not tl or time.time() - run["t_job"] - tl[-1]["t"] > 0.25
            ):
                tl.append({"t": round(time.time() - run["t_job"], 2), **self._progress(ws)})
            time.sleep(0.05)
        run["startup_s"] = max((w.ready_at or w.started_at) - w.started_at for w in ws)
        run["job_after_launch_s"] = run["t_job"] - t_launch
        return run

    def _progress(self, ws: list[Worker]) -> dict[str, int]:
        """Summed job and sink counters of the workers (from their status views)."""
        out = {"events": 0, "snapshot_rows": 0, "applied": 0, "batches": 0}
        for w in ws:
            st = w.status() or {}
            job = st.get("jobs", {}).get(JOB) or {}
            out["events"] += int(job.get("events", 0))
            out["snapshot_rows"] += int(job.get("snapshot_rows", 0))
            for sink in st.get("sinks", {}).values():
                out["applied"] += int(sink.get("changes_applied", 0))
                out["batches"] += int(sink.get("batches", 0))
        return out

    @staticmethod
    def _first_time(timeline: list[dict[str, Any]], key: str, total: int) -> float | None:
        return next((p["t"] for p in timeline if p[key] >= total), None)

    def _profile_start(self, phase: str, w: Worker) -> Recorder | None:
        if not self.o.profile:
            return None
        return Recorder(w.pid, self.s.out / f"profile-{phase}", rate=self.o.profile_rate)

    @staticmethod
    def _runner_cpu(cpu_s: dict[str, float], name: str) -> float:
        """The job's worker and its binlog reader process: what the profile samples."""
        return cpu_s.get(name, 0.0) + cpu_s.get(f"{name}/reader", 0.0)

    def _profile_end(
        self, phase: str, rec: Recorder | None, worker_cpu: float, records: int
    ) -> None:
        if rec is None:
            return
        raw = rec.stop()
        if raw is None:
            self.profiles[phase] = {"error": "py-spy not available or wrote nothing"}
            return
        parts = split(raw)
        total = sum(parts.values()) or 1
        self.profiles[phase] = {
            "samples": total,
            "worker_cpu_s": round(worker_cpu, 2),
            "records": records,
            "us_per_record_total": round(worker_cpu / records * 1e6, 1),
            "us_per_record": {
                p: round(parts[p] / total * worker_cpu / records * 1e6, 1) for p in PARTS
            },
            "share_pct": {p: round(parts[p] / total * 100, 1) for p in PARTS},
            "top_self": [
                {"frame": f, "samples": c, "part": part} for f, c, part in top_functions(raw, 30)
            ],
            "raw": str(raw),
        }

    def _cpu_summary(self, a: dict[str, float], b: dict[str, float], records: int) -> dict:
        d = self.s.cpu_delta(a, b)
        wall = d.pop("machine_total", 0.0)
        busy = d.pop("machine_busy", 0.0)
        ours = sum(d.values())
        return {
            "cpu_s": {k: round(v, 2) for k, v in d.items()},
            "us_per_record": {k: round(v / records * 1e6, 1) for k, v in d.items()}
            if records
            else {},
            "machine_busy_pct": round(busy / wall * 100, 1) if wall else None,
            "others_cpu_s": round(
                busy - ours, 2
            ),  # everything on the box not ours (bench itself included)
        }

    # ------------------------------------------------------------------ dataset and baselines

    def dataset(self) -> None:
        t0 = time.perf_counter()
        create_and_load(self.conn, self.o.rows, self.o.seed)
        self.details["dataset_load_s"] = round(time.perf_counter() - t0, 1)
        log(f"dataset: {self.o.rows} rows in {self.details['dataset_load_s']}s")

    def _median(self, key: str, runs: list[float]) -> float:
        self.details[f"{key}_runs"] = [round(r) for r in runs]
        self.results[key] = round(statistics.median(runs))
        return self.results[key]

    def baselines(self) -> None:
        """Each baseline ``--repeat`` times; the median is reported, every run kept."""
        rows: list[tuple[Any, ...]] = []
        runs = []
        for _ in range(self.o.repeat):
            rows, rate = baselines.select_rows(self.s.mysql)
            runs.append(rate)
        log(f"baseline select: {self._median('baseline_select_rows_per_s', runs):,} rows/s")
        runs = [baselines.copy_rows(self.s.pg_dsn, rows) for _ in range(self.o.repeat)]
        log(f"baseline copy: {self._median('baseline_copy_rows_per_s', runs):,} rows/s")
        records = baselines.change_events(rows)
        del rows
        size = sum(len(v) for _, v in records) / len(records)
        self.details["event_bytes_avg"] = round(size)
        assert self.s.broker is not None
        runs = [
            baselines.produce(self.s.broker.bootstrap, f"{self.s.app_id}-produce-{i}", records)
            for i in range(self.o.repeat)
        ]
        rate = self._median("baseline_produce_msgs_per_s", runs)
        log(f"baseline produce: {rate:,} msgs/s of {size:.0f} bytes")

    def backlog(self) -> tuple[tuple[str, int], tuple[str, int], int]:
        """Apply the change backlog (single-row statements, autocommit); returns its span."""
        start = master_position(self.conn)
        ids = alive_ids(self.conn)
        churn = Churn(ids, max(ids, default=0) + 1, self.o.seed + 1)
        t0 = time.perf_counter()
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            for _ in range(self.o.backlog):
                cur.execute(*churn.statement())
        self.details["backlog_apply_s"] = round(time.perf_counter() - t0, 1)
        self.details["backlog_mix"] = dict(churn.counts)
        end = master_position(self.conn)
        log(
            f"backlog: {self.o.backlog} statements {churn.counts} in "
            f"{self.details['backlog_apply_s']}s"
        )
        return start, end, self.o.backlog

    def binlog_baseline(self, start: tuple[str, int], end: tuple[str, int], expected: int) -> None:
        runs = []
        for _ in range(self.o.repeat):
            n, rate = baselines.binlog_rows(self.s.mysql, BINLOG_BASELINE_SERVER_ID, start, end)
            runs.append(rate)
            if n != expected:
                raise RuntimeError(f"binlog baseline read {n} row events, expected {expected}")
        self.details["baseline_binlog_rows"] = n
        rate = self._median("baseline_binlog_rows_per_s", runs)
        log(f"baseline binlog: {rate:,} rows/s over {n} row events")

    # ------------------------------------------------------------------ pipeline phases

    def snapshot(self) -> None:
        n = self.o.rows
        run = self._launch([f"w{i + 1}" for i in range(self.o.workers)], "snapshot")
        ws, t_job = run["workers"], run["t_job"]
        self.results["startup_s"] = round(run["startup_s"], 2)
        self.details["snapshot_job_started_after_launch_s"] = round(run["job_after_launch_s"], 2)
        log(f"startup: {len(ws)} worker(s) ready in {run['startup_s']:.2f}s")
        deadline = time.monotonic() + max(600, n / 200)
        timeline: list[dict[str, Any]] = run["timeline"]
        next_log = time.monotonic() + 10
        assert self.s.pg is not None
        while True:
            self._check_workers()
            t_poll = time.time()
            have = target_count(self.s.pg)
            if have >= n:
                break
            timeline.append(
                {"t": round(time.time() - t_job, 2), **self._progress(ws), "target": have}
            )
            if time.monotonic() > deadline:
                raise TimeoutError(f"snapshot: target holds {have} of {n} rows")
            if time.monotonic() > next_log:
                next_log += 10
                log(
                    f"snapshot: read {timeline[-1]['snapshot_rows']:,}, "
                    f"target {have:,} / {n:,} rows"
                )
            time.sleep(0.25)
        seconds = t_poll - t_job
        cpu1 = self.s.cpu()
        self.results["snapshot_rows_per_s"] = round(n / seconds)
        read_s = self._first_time(timeline, "snapshot_rows", n)
        self.details["snapshot"] = {
            "seconds": round(seconds, 2),
            "source_read_and_produced_s": read_s,
            "first_row_in_target_s": next((p["t"] for p in timeline if p.get("target")), None),
            "sink_changes_applied": timeline[-1]["applied"] if timeline else None,
            "timeline": timeline[:: max(1, len(timeline) // 60)] + timeline[-1:],
            "cpu": self._cpu_summary(run["cpu0"], cpu1, n),
        }
        cpu_w = self._runner_cpu(self.details["snapshot"]["cpu"]["cpu_s"], run["runner"].name)
        self._profile_end("snapshot", run["rec"], cpu_w, n)
        log(
            f"snapshot: {n:,} rows in {seconds:.1f}s = {n / seconds:,.0f} rows/s "
            f"(source side done after {read_s}s)"
        )
        self.equal("snapshot", timeout=120)
        time.sleep(3)  # a few commit intervals
        self.details["snapshot"]["group_offsets_after"] = self.s.group_lag()

    def cdc(self, with_baseline: bool) -> None:
        for w in self.s.alive_workers(None):
            self.s.stop_worker(w)
        log("cdc: pipeline stopped; applying the backlog")
        start, end, events = self.backlog()
        expected_print = source_print(self.conn)
        if with_baseline:
            self.binlog_baseline(start, end, events)
        run = self._launch([f"w{i + 1}-cdc" for i in range(self.o.workers)], "cdc")
        ws, t_job = run["workers"], run["t_job"]
        self.details["startup_restart_s"] = round(run["startup_s"], 2)
        deadline = time.monotonic() + max(600, events / 50)
        timeline: list[dict[str, Any]] = run["timeline"]
        next_log = time.monotonic() + 10
        next_print = time.monotonic() + 5
        assert self.s.pg is not None
        while True:
            self._check_workers()
            timeline.append({"t": round(time.time() - t_job, 2), **self._progress(ws)})
            sent = timeline[-1]["events"]
            if sent >= events or time.monotonic() > next_print:
                next_print = time.monotonic() + 5
                t_poll = time.time()
                if target_print(self.s.pg) == expected_print:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"cdc: target not equal to source; job sent {sent} events")
            if time.monotonic() > next_log:
                next_log += 10
                log(
                    f"cdc: job sent {sent:,} / {events:,} events, "
                    f"sink applied {timeline[-1]['applied']:,}"
                )
            time.sleep(0.25)
        seconds = t_poll - t_job
        cpu1 = self.s.cpu()
        self.results["cdc_events_per_s"] = round(events / seconds)
        read_s = self._first_time(timeline, "events", events)
        self.details["cdc"] = {
            "seconds": round(seconds, 2),
            "source_read_and_produced_s": read_s,
            "source_events_per_s": round(events / read_s) if read_s else None,
            "sink_changes_applied": timeline[-1]["applied"] if timeline else None,
            "timeline": timeline[:: max(1, len(timeline) // 60)] + timeline[-1:],
            "cpu": self._cpu_summary(run["cpu0"], cpu1, events),
        }
        cpu_w = self._runner_cpu(self.details["cdc"]["cpu"]["cpu_s"], run["runner"].name)
        self._profile_end("cdc", run["rec"], cpu_w, events)
        log(
            f"cdc: {events:,} events drained in {seconds:.1f}s = {events / seconds:,.0f}/s "
            f"(source side done after {read_s}s)"
        )
        self.equal("cdc", timeout=120)

    def _index_target(self) -> None:
        assert self.s.pg is not None
        self.s.pg.execute(f'CREATE INDEX IF NOT EXISTS bench_updated_at ON "{TABLE}" (updated_at)')

    def latency(self) -> None:
        self._index_target()
        rate, duration = self.o.latency_rate, self.o.latency_seconds
        ids = alive_ids(self.conn)
        random.Random(self.o.seed + 2).shuffle(ids)
        ids = ids[: int(rate * duration)]
        mp = self.s.mp
        inbox, res_w, res_p = mp.Queue(), mp.Queue(), mp.Queue()
        writer_done, stop = mp.Event(), mp.Event()
        self._stops.append(stop)
        self.s.spawn(load.visibility_poller, self.s.pg_dsn, inbox, writer_done, stop, 30.0, res_p)
        cpu0 = self.s.cpu()
        self.s.spawn(load.stamp_writer, self.s.mysql, ids, rate, duration, inbox, stop, res_w)
        log(f"latency: {rate}/s for {duration}s")
        w = res_w.get(timeout=duration + 60)
        writer_done.set()
        cpu1 = self.s.cpu()
        p = res_p.get(timeout=90)
        lat = sorted(x * 1000 for x in p["latencies"])
        if lat:
            q = statistics.quantiles(lat, n=100, method="inclusive")
            self.results["latency_ms_p50"] = round(q[49], 1)
            self.results["latency_ms_p99"] = round(q[98], 1)
        self.details["latency"] = {
            "changes_sent": w["sent"],
            "rate_achieved": round(w["rate"], 1),
            "seen": len(lat),
            "missing": p["missing"],
            "polls": p["polls"],
            "min_ms": round(lat[0], 1) if lat else None,
            "max_ms": round(lat[-1], 1) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
            "cpu": self._cpu_summary(cpu0, cpu1, w["sent"]),
        }
        log(
            f"latency: p50 {self.results.get('latency_ms_p50')} ms, "
            f"p99 {self.results.get('latency_ms_p99')} ms, {p['missing']} not seen"
        )
        self.equal("latency", timeout=120)

    def soak(self) -> None:
        rate, duration = self.o.soak_rate, self.o.soak_seconds
        mp = self.s.mp
        res, stop = mp.Queue(), mp.Event()
        self._stops.append(stop)
        names = [w.name for w in self.s.alive_workers()]
        t0 = time.monotonic()
        cpu0 = self.s.cpu()
        self.s.spawn(load.churn, self.s.mysql, rate, duration, self.o.seed + 3, stop, res)
        log(f"soak: {rate}/s mixed changes for {duration}s")
        deadline = time.monotonic() + duration + 120
        r = None
        next_log = time.monotonic() + 60
        next_lag = time.monotonic() + 10
        lags: list[tuple[float, float | None]] = []
        while r is None:
            self._check_workers()
            try:
                r = res.get(timeout=1)
            except Exception:
                if time.monotonic() > deadline:
                    stop.set()
                    raise TimeoutError("soak load did not finish") from None
            if time.monotonic() > next_lag:
                next_lag += 10
                lags.append((round(time.monotonic() - t0), self._lag_s()))
            if time.monotonic() > next_log:
                next_log += 60
                mem = {n: round(self.s.mem.series[n][-1][1]) for n in names if self.s.mem.series[n]}
                log(f"soak: {time.monotonic() - t0:.0f}s, RSS MiB {mem}, target lag {lags[-1][1]}s")
        t1 = time.monotonic()
        cpu1 = self.s.cpu()
        growth: dict[str, Any] = {}
        for n in names:
            series = [(t, v) for t, v in self.s.mem.series.get(n, []) if t0 <= t <= t1]
            span = t1 - t0
            warm = [v for t, v in series if t0 + 0.2 * span <= t <= t0 + 0.3 * span]
            end = [v for t, v in series if t >= t1 - 0.1 * span]
            if warm and end:
                a, b = statistics.fmean(warm), statistics.fmean(end)
                growth[n] = {
                    "rss_mb_after_warmup": round(a, 1),
                    "rss_mb_end": round(b, 1),
                    "rss_mb_first": round(series[0][1], 1),
                    "growth_pct": round((b - a) / a * 100, 1),
                }
        if growth:
            self.results["rss_growth_pct"] = max(g["growth_pct"] for g in growth.values())
        self.details["soak"] = {
            "load": r,
            "workers": names,
            "rss": growth,
            "rss_series_mb": {
                n: [
                    (round(t - t0), round(v))
                    for t, v in self.s.mem.series.get(n, [])
                    if t0 <= t <= t1
                ][::10]
                for n in names
            },
            "target_lag_s": lags,
            "cpu": self._cpu_summary(cpu0, cpu1, r["sent"]),
        }
        log(f"soak: {r['sent']} changes at {r['rate']:.0f}/s; RSS growth {growth}")
        t_end = time.monotonic()
        self.equal("soak", timeout=max(300, duration))
        self.details["soak"]["catch_up_after_load_s"] = round(time.monotonic() - t_end, 1)

    def failover(self) -> None:
        self._index_target()
        live = self.s.alive_workers()
        while len(live) < 2:
            live.append(self.s.start_worker(f"w{len(self.s.workers) + 1}-fo"))
        t_join = time.monotonic()
        for w in live:
            w.wait_ready(300)
        self.details["startup_second_worker_s"] = round(time.monotonic() - t_join, 2)
        runner = self._stable_runner(live, timeout=180)
        survivor = next(w for w in live if w is not runner)
        ids = alive_ids(self.conn)
        random.Random(self.o.seed + 4).shuffle(ids)
        mp = self.s.mp
        res, stop = mp.Queue(), mp.Event()
        self._stops.append(stop)
        rate = self.o.failover_rate
        self.s.spawn(load.stamp_writer, self.s.mysql, ids, rate, 180.0, None, stop, res)
        time.sleep(3)
        assert self.s.pg is not None
        # Where everything stands just before the kill (the timeline below is told from it).
        at_kill: dict[str, Any] = {
            "group_offsets": self.s.group_lag(),
            "kafka_end_offsets": failover_trace.kafka_offsets(
                self.s.broker.bootstrap, self.s.app_id
            ),
        }
        rs = runner.status() or {}
        job = (rs.get("jobs") or {}).get(JOB) or {}
        at_kill["runner_job"] = {k: job.get(k) for k in ("phase", "position", "events",
                                                          "last_commit_at")}  # fmt: skip
        at_kill["runner_sinks"] = rs.get("sinks")
        at_kill["target_lag_s"] = self._lag_s()
        at_kill["target_progress_pos"] = self._target_progress_pos()
        log(f"failover: SIGKILL {runner.name} (runs the job); {survivor.name} survives")
        self.s.mem.forget(runner.name)
        t_kill = time.time()
        runner.kill()
        # Every change whose binlog position ends after this one was written after the kill.
        kill_pos = master_position(self.conn)
        at_kill["binlog_position"] = f"{kill_pos[0]}:{kill_pos[1]}"
        at_kill["job_bytes_behind_binlog"] = failover_trace.bytes_behind(
            job.get("position"), kill_pos
        )
        at_kill["job_last_commit_age_s"] = (
            round(t_kill - job["last_commit_at"], 2) if job.get("last_commit_at") else None
        )
        samples: list[dict[str, Any]] = []
        t_flow = t_takeover = None
        crash: dict[str, Any] | None = None
        deadline = time.monotonic() + 150
        while t_flow is None and time.monotonic() < deadline:
            why = survivor.crashed_since(t_kill) if crash is None else None
            if why is not None:
                # Report it, then do what a supervisor would: restart it on its data directory.
                crash = {
                    "worker": survivor.name,
                    "after_kill_s": round(time.time() - t_kill, 2),
                    "reason": _crash_reason(survivor, t_kill, why),
                }
                log(
                    f"failover: survivor {survivor.name} CRASHED: {crash['reason'][:300]}; "
                    "restarting it on its data directory"
                )
                self.s.mem.forget(survivor.name)
                survivor.kill()
                survivor = self.s.start_worker(f"{survivor.name}-restarted", survivor.datadir)
            t_poll = time.time()
            row = self.s.pg.execute(
                f'SELECT extract(epoch FROM max(updated_at)) FROM "{TABLE}"'
            ).fetchone()
            if row and row[0] is not None and float(row[0]) > t_kill:
                t_flow = t_poll
            st = survivor.status() or {}
            sj = (st.get("jobs") or {}).get(JOB) or {}
            if t_takeover is None and sj.get("phase") == "streaming":
                t_takeover = time.time()
            sample = {
                "phase": sj.get("phase"),
                "position": sj.get("position"),
                "events": sj.get("events"),
                "applied": sum(
                    int(x.get("changes_applied", 0)) for x in (st.get("sinks") or {}).values()
                ),
            }
            if not samples or {k: samples[-1][k] for k in sample} != sample:
                samples.append({"t": round(time.time() - t_kill, 2), **sample})
            time.sleep(0.1)
        group_after = self.s.group_lag()
        time.sleep(3)
        stop.set()
        w = res.get(timeout=30)
        if t_flow is None:
            raise TimeoutError(f"failover: no change flowed within 150 s of the kill ({crash})")
        self.results["failover_survivor_crashed"] = crash is not None
        self.results["failover_s"] = round(t_flow - t_kill, 2)
        self.details["failover"] = {
            "survivor_crashed": crash,
            "job_streaming_on_survivor_s": round(t_takeover - t_kill, 2) if t_takeover else None,
            "at_kill": at_kill,
            "timeline": failover_trace.failover_timeline(
                self.s.broker.bootstrap,
                self.s.app_id,
                survivor,
                t_kill,
                kill_pos,
                at_kill["kafka_end_offsets"],
                samples,
                t_flow,
            ),
            "survivor_samples": samples,
            "group_offsets_at_flow": group_after,
            "writer": w,
            "session_timeout_s": self.s.worker_env()["SLUICE_SESSION_TIMEOUT_S"],
            "heartbeat_interval_s": self.s.worker_env()["SLUICE_HEARTBEAT_INTERVAL_S"],
        }
        log(f"failover: changes flow again {t_flow - t_kill:.1f}s after the kill")
        self.equal("failover", timeout=180)
        # The killed worker comes back on its old data directory, as after a machine restart;
        # the soak then runs on both.
        t_back = time.time()
        _, crashes = self.start_supervised(f"{runner.name}-back", runner.datadir)
        self.details["failover"]["killed_worker_back_ready_s"] = round(time.time() - t_back, 2)
        self.details["failover"]["crashes_on_return"] = crashes
        if survivor.crashed_since(t_back):
            self.details["failover"]["survivor_crash_on_return"] = _crash_reason(
                survivor, t_back, "crashed"
            )
        self.equal("failover_return", timeout=180)

    def start_supervised(
        self, name: str, datadir: Path | None = None, attempts: int = 3, role: str = "job"
    ) -> tuple[Worker, list[str]]:
        """Start a worker and wait until ready; if it crashes meanwhile, note why and start it
        again on the same data directory, as a process supervisor would."""
        crashes: list[str] = []
        for i in range(attempts):
            w = self.s.start_worker(name if i == 0 else f"{name}-r{i}", datadir, role)
            datadir = w.datadir
            t0 = time.time()
            with contextlib.suppress(RuntimeError, TimeoutError):
                w.wait_ready(300)
            why = w.crashed_since(t0)
            if why is None and w.ready_at:
                return w, crashes
            crashes.append(_crash_reason(w, t0, why or "not ready in 300 s"))
            log(f"worker {w.name} crashed while starting: {crashes[-1][:300]}")
            self.s.mem.forget(w.name)
            w.kill()
        raise RuntimeError(f"worker {name} did not start in {attempts} attempts: {crashes}")

    def ensure_worker(self) -> None:
        """Before a phase: no load left running; every worker that crashed since it started
        is noted and started again on its data directory; at least one worker runs."""
        for ev in self._stops:
            ev.set()
        for w in list(self.s.workers):
            if w.expected_exit:
                continue
            why = w.crashed_since(w.started_at)
            if why is None:
                continue
            reason = _crash_reason(w, w.started_at, why)
            self.details.setdefault("crashes_between_phases", []).append(
                {"worker": w.name, "reason": reason}
            )
            log(f"worker {w.name} had crashed: {reason[:300]}; starting it again")
            self.s.mem.forget(w.name)
            w.kill()
            self.start_supervised(f"{w.name}-r", w.datadir, role=w.role)
        if not self.s.alive_workers():
            self.start_supervised(f"w{len(self.s.workers) + 1}-spare")

    def _lag_s(self) -> float | None:
        """Now minus the newest ``updated_at`` in the target: how far behind the sink is while
        changes stamped with NOW(6) keep coming."""
        assert self.s.pg is not None
        row = self.s.pg.execute(
            f'SELECT extract(epoch FROM max(updated_at)) FROM "{TABLE}"'
        ).fetchone()
        if not row or row[0] is None:
            return None
        return round(time.time() - float(row[0]), 1)

    def _target_progress_pos(self) -> str | None:
        """The newest source position the SQL sink has committed (its progress table)."""
        assert self.s.pg is not None
        try:
            row = self.s.pg.execute('SELECT max(_sluice_pos) FROM "_sluice_progress"').fetchone()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if not row else row[0]

    def _stable_runner(self, live: list[Worker], timeout: float) -> Worker:
        """The worker running the job once the group has settled (same runner 3 s in a row)."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            self._check_workers()
            runner = self.s.job_runner()
            shares = [bool((w.status() or {}).get("assignment")) for w in live]
            if runner is not None and all(shares) and runner is last:
                if time.monotonic() - since >= 3:
                    return runner
            else:
                last, since = runner, time.monotonic()
            time.sleep(0.5)
        raise TimeoutError("failover: the group did not settle with one job runner")

    def write_details(self, path: Path) -> None:
        import json

        path.write_text(
            json.dumps(
                {
                    "results": self.results,
                    "details": self.details,
                    "correct": self.correct,
                    "profiles": self.profiles,
                },
                indent=2,
                default=str,
            )
        )


def _crash_reason(w: Worker, since: float, default: str) -> str:
    """The first log line after ``since`` naming why a worker crashed."""
    lines = w.log_lines_since(since)
    for needle in ("Crashed reason=", "ERROR", "CRITICAL"):
        for line in lines:
            if needle in line:
                return line.split("] ", 3)[-1][:500]
    return default
