"""Processes the benchmark runs and watches: workers, the embedded broker, /proc readings.

Nothing here imports the ``app`` package: importing any ``app.*`` module builds the Faust app
(and probes a broker), which the benchmark driver must not do. The broker class is loaded from
its file instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def load_embedded_broker() -> Any:
    """``app.broker.EmbeddedBroker`` without importing the ``app`` package."""
    name = "_sluice_bench_broker"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "app" / "broker.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].EmbeddedBroker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Child side, before exec: SIGKILL when the benchmark dies, so no worker outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# ---------------------------------------------------------------------------- /proc readings


def mem_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) in MiB, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, rest = line.split(":", 1)
            vals[key] = int(rest.split()[0]) / 1024
    if "VmRSS" not in vals:
        return None
    return vals["VmRSS"], vals.get("VmHWM", vals["VmRSS"])


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (a worker's binlog reader process), [] if it is gone."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    vals = [int(v) for v in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


class MemorySampler(threading.Thread):
    """Samples VmRSS/VmHWM of registered processes every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="bench-mem")
        self.interval = interval
        self._pids: dict[str, int] = {}
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.peak_mb: dict[str, float] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self._pids[name] = pid
            self.series.setdefault(name, [])

    def forget(self, name: str) -> None:
        self.sample_once()
        with self._lock:
            self._pids.pop(name, None)

    def sample_once(self) -> None:
        now = time.monotonic()
        with self._lock:
            pids = dict(self._pids)
        for name, pid in pids.items():
            m = mem_mb(pid)
            if m is None:
                continue
            rss, hwm = m
            self.series[name].append((now, rss))
            self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), hwm, rss)
            if name in ("broker", "mariadbd"):
                continue
            # A worker's children (its source job's binlog reader), summed under one name.
            kids = [k for k in map(mem_mb, child_pids(pid)) if k is not None]
            if kids:
                rss = sum(k[0] for k in kids)
                hwm = sum(k[1] for k in kids)
                self.series.setdefault(f"{name}/reader", []).append((now, rss))
                self.peak_mb[f"{name}/reader"] = max(
                    self.peak_mb.get(f"{name}/reader", 0.0), hwm, rss
                )

    def peak_mb_of(self, exclude: tuple[str, ...] = ("broker", "mariadbd")) -> dict[str, float]:
        """Peak memory of the pipeline processes (the services are not counted)."""
        return {k: v for k, v in self.peak_mb.items() if k not in exclude}

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample_once()

    def stop(self) -> None:
        self._halt.set()


# ---------------------------------------------------------------------------- workers

_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


class Worker:
    """``python -m faust -A app worker`` as a child process with its own web port and datadir."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        workdir: Path,
        datadir: Path | None = None,
        role: str = "job",
    ) -> None:
        self.name = name
        self.role = role  # "job" or "sink" (bench/stack.py)
        self.workdir = workdir
        self.datadir = datadir or workdir / f"{name}-data"
        self.web_port = free_port()
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None
        self.expected_exit = False  # stopped or killed on purpose

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Worker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "faust",
            "-A",
            "app",
            "--datadir",
            str(self.datadir),
            "worker",
            "-l",
            "info",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(self.web_port),
        ]
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def get(self, path: str, timeout: float = 5) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.web_port}{path}", timeout=timeout
            ) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None

    def status(self) -> dict[str, Any] | None:
        try:
            code, body = self.get("/sluice/status")
        except (OSError, ValueError):
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def job(self, name: str) -> dict[str, Any] | None:
        s = self.status()
        return None if s is None else s.get("jobs", {}).get(name)

    def healthy(self) -> bool:
        try:
            ok = self.get("/sluice/health", timeout=2)[0] == 200
        except (OSError, ValueError):
            return False
        if ok and self.ready_at is None:
            self.ready_at = time.time()
        return ok

    def wait_ready(self, timeout: float) -> float:
        """Seconds from process start until ``/sluice/health`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_tail()}")
            if self.healthy():
                assert self.ready_at is not None
                return self.ready_at - self.started_at
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready in {timeout:.0f}s:\n{self.log_tail()}")

    def log_time(self, needle: str) -> float | None:
        """Wall-clock time of the first log line containing ``needle``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if needle in line:
                m = _LOG_TIME.match(line)
                if m:
                    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    def log_lines_since(self, since: float) -> list[str]:
        """Log lines stamped at or after wall-clock ``since`` (continuation lines included)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        out, keep = [], False
        for line in text.splitlines():
            m = _LOG_TIME.match(line)
            if m:
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                keep = t >= since
            if keep:
                out.append(line)
        return out

    def crashed_since(self, since: float) -> str | None:
        """Why the worker crashed after ``since``: it exited, or Faust logged a crash of the
        app or worker (the process may then hang on without doing anything)."""
        if not self.alive:
            return "exited"
        for line in self.log_lines_since(since):
            if "[^-App]: Crashed" in line or "We experienced a crash" in line:
                return line.split("] ", 3)[-1][:500]
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 45) -> int | None:
        """Clean stop (SIGTERM to its process group); SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        return self.proc.poll()

    def kill(self) -> None:
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
