"""``python -m bench``: measure the replication path beside the limits of its parts.

Sets up everything itself (embedded broker, private MariaDB with binlog, a fresh PostgreSQL
database on the local server), runs the phases, tears everything down (also on Ctrl-C or a
failure), prints a table and, as the last line on stdout, one JSON object. Progress goes to
stderr. Options: bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

PHASES = ("baselines", "snapshot", "cdc", "latency", "failover", "soak")
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=None, help="rows in the dataset (200000)")
    p.add_argument("--backlog", type=int, default=None, help="CDC backlog statements (50000)")
    p.add_argument("--latency-rate", type=float, default=1000, help="changes/s (1000)")
    p.add_argument("--latency-seconds", type=float, default=None, help="seconds (30)")
    p.add_argument("--soak-seconds", type=float, default=None, help="steady-run seconds (600)")
    p.add_argument("--soak-rate", type=float, default=500, help="soak changes/s (500)")
    p.add_argument("--failover-rate", type=float, default=200, help="changes/s during failover")
    p.add_argument("--workers", type=int, default=1, help="workers for the throughput phases (1)")
    p.add_argument(
        "--sink-workers",
        type=int,
        default=0,
        help="workers of a sink group of their own; the job's workers then run sources only (0)",
    )
    p.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run: 20000 rows, 5000 backlog, 10 s latency, 30 s soak",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the first worker during the snapshot and cdc phases",
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s (100)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="SLUICE_X=V",
        help="extra worker environment (repeatable), e.g. SLUICE_SINK_BATCH_SIZE=5000",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs of each baseline; median (3)")
    p.add_argument(
        "--analyze-every",
        type=float,
        default=60,
        help="seconds between ANALYZE of the target when the server runs without autovacuum "
        "(60; 0 = never)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=None, help="run directory (bench/out/<time>)")
    p.add_argument(
        "--keep", action="store_true", help="keep the MariaDB datadir and the PostgreSQL database"
    )
    o = p.parse_args(argv)
    quick = {"rows": 20_000, "backlog": 5_000, "latency_seconds": 10, "soak_seconds": 30}
    full = {"rows": 200_000, "backlog": 50_000, "latency_seconds": 30, "soak_seconds": 600}
    for k, v in (quick if o.quick else full).items():
        if getattr(o, k) is None:
            setattr(o, k, v)
    o.phases = [x.strip() for x in o.phases.split(",") if x.strip()]
    unknown = set(o.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases {sorted(unknown)}; choose from {PHASES}")
    for item in o.env:
        if "=" not in item or not item.startswith("SLUICE_"):
            p.error(f"--env wants SLUICE_NAME=VALUE, got {item!r}")
    if o.out is None:
        o.out = REPO / "bench" / "out" / time.strftime("%Y%m%d-%H%M%S")
    return o


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    o = parse_args(argv)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    from bench import report
    from bench.phases import Phases
    from bench.stack import Stack, log

    env = dict(item.split("=", 1) for item in o.env)
    stack = Stack(o.out, env, o.keep, sink_group=o.sink_workers > 0)
    ph = Phases(stack, o)
    extra: dict[str, Any] = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": o.rows,
        "backlog": o.backlog,
        "workers": o.workers,
        "sink_workers": o.sink_workers,
        "phases": o.phases,
        "out": str(o.out),
    }
    code = 0
    errors: dict[str, str] = {}
    t0 = time.monotonic()
    pipeline = [x for x in o.phases if x != "baselines"]
    try:
        stack.start(o.analyze_every)
        extra["worker_env"] = {
            k: v
            for k, v in stack.worker_env().items()
            if k not in ("SLUICE_PIPELINE_FILE", "SLUICE_BROKER_URL")
        }
        ph.dataset()
        if "baselines" in o.phases:
            ph.baselines()
            if "cdc" not in o.phases:  # the binlog baseline needs a backlog of its own
                ph.binlog_baseline(*ph.backlog())
        if pipeline:
            ph.snapshot()  # every pipeline phase starts from the initial load
        steps = {
            "cdc": lambda: ph.cdc(with_baseline="baselines" in o.phases),
            "latency": ph.latency,
            "failover": ph.failover,
            "soak": ph.soak,
        }
        for name, step in steps.items():
            if name not in o.phases:
                continue
            try:
                ph.ensure_worker()
                step()
            except Exception as exc:  # report it and go on with the next phase
                log(f"{name} failed: {type(exc).__name__}: {exc}")
                traceback.print_exc(file=sys.stderr)
                errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
                ph.correct.setdefault(name, False)
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        extra["error"] = "interrupted"
        code = 130
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
        extra["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            stack.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        log(f"cleaned up after {time.monotonic() - t0:.0f}s")
    if errors:
        extra["phase_errors"] = errors
        code = code or 1
    extra["duration_s"] = round(time.monotonic() - t0)
    extra["target_autovacuum"] = stack.autovacuum
    extra["target_analyze_runs"] = stack.analyzer.runs if stack.analyzer else 0
    ph.details["services_peak_rss_mb"] = {
        k: round(v, 1) for k, v in stack.mem.peak_mb.items() if k in ("broker", "mariadbd")
    }
    out = report.summary(ph.results, ph.correct, stack.mem.peak_mb_of(), ph.profiles, extra)
    ph.details["summary"] = out
    o.out.mkdir(parents=True, exist_ok=True)
    ph.write_details(o.out / "results.json")
    print(report.table(out, ph.details))
    print(f"details: {o.out / 'results.json'}")
    print(report.json_line(out), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
