"""Sampling profiles of a worker (py-spy) and their split into the parts of the hot path.

``py-spy record --format raw`` writes one line per distinct stack: ``frame;frame;… count``,
outermost frame first, each frame ``function (file:line)``. Idle threads are not sampled, so the
samples of a part divided by all samples is that part's share of the worker's CPU; times the
worker's CPU seconds (from /proc) over the records of the phase, it is CPU per record.

py-spy is a profiling aid only (``pip install py-spy`` into the venv); without it the benchmark
runs and says that no profile was taken.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

PARTS = ("reader", "encoder", "producer", "consumer", "decoder", "writer", "other")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    """``py-spy record`` attached to a running process until ``stop()``."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        self.raw = out.with_suffix(".txt")
        exe = py_spy()
        self.proc: subprocess.Popen[bytes] | None = None
        if exe is None:
            return
        log = out.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--nonblocking",
                "--subprocesses",  # the binlog reader process (sources/reader_process.py)
                "--full-filenames",
                "--format",
                "raw",
                "--output",
                str(self.raw),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> Path | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        deadline = time.monotonic() + 5
        while not self.raw.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.raw if self.raw.exists() else None


def _files(frames: list[str]) -> str:
    return "\n".join(frames)


def classify(frames: list[str]) -> str:
    """The part of the hot path a stack belongs to (frames outermost first)."""
    s = _files(frames)
    if (
        "pymysqlreplication" in s
        or "sources/binlog.py" in s
        or "sources/snapshot.py" in s
        or "sources/reader_process.py" in s
    ):
        return "reader"
    if "sinks/" in s or "sqlalchemy" in s or "psycopg" in s:
        return "writer"
    if "agents/delivery.py" in s or "agents/changes.py" in s:
        if "app/records.py" in s or "sources/schema.py" in s or "_decode" in s:
            return "decoder"
        if "aiokafka/producer" in s or "faust/transport/producer" in s or ".send (" in s:
            return "producer"
        return "consumer"
    if "sources/job.py" in s or "sources/writer.py" in s or "sources/values.py" in s:
        if ("commit (" in s and "sources/writer.py" in s) or "aiokafka" in s:
            return "producer"
        if "pymysql" in s:
            return "reader"
        return "encoder"
    if "aiokafka/producer" in s or "aiokafka/record" in s or "faust/transport/producer" in s:
        return "producer"
    if (
        "aiokafka/consumer" in s
        or "faust/transport" in s
        or "faust/streams" in s
        or "faust/channels" in s
        or "faust/agents" in s
        or "faust/tables" in s
        or "faust/stores" in s
    ):
        return "consumer"
    return "other"


def parse(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def split(raw: Path) -> dict[str, int]:
    """Samples per part."""
    parts: Counter[str] = Counter()
    for frames, count in parse(raw):
        parts[classify(frames)] += count
    return {p: parts.get(p, 0) for p in PARTS}


def top_functions(raw: Path, n: int = 25) -> list[tuple[str, int, str]]:
    """Self time: the innermost frame of each stack, with its part."""
    own: Counter[tuple[str, str]] = Counter()
    for frames, count in parse(raw):
        own[(frames[-1].strip(), classify(frames))] += count
    return [(f, c, part) for (f, part), c in own.most_common(n)]
