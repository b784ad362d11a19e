"""A private MariaDB server with a full ROW binlog, for a first run and for tests.

The system MariaDB (if any) is left alone: :class:`PrivateMariaDB` runs its own ``mariadbd``
with its own datadir, TCP port (on 127.0.0.1), socket, pid file and error log, all under a
base directory chosen by the caller.  ``root`` with an empty password works over TCP.

    with PrivateMariaDB(tmp_path / "mariadb") as db:
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")

The datadir is initialised with ``mariadb-install-db`` on the first start and reused on later
starts, so ``kill()`` followed by ``start()`` behaves like a crash and restart of the source
database (InnoDB and binlog crash recovery included).  The TCP port stays the same across
restarts of one instance.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pymysql
from pymysql.connections import Connection

__all__ = [
    "MariaDBNotFoundError",
    "MariaDBStartError",
    "PrivateMariaDB",
    "find_install_db",
    "find_mariadbd",
]

INSTALL_HINT = "apt-get install mariadb-server  (Debian/Ubuntu; or run: bash scripts/setup.sh)"

# Where distributions put the server binaries; /usr/sbin is not on a non-root user's PATH.
_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec")

_INNODB_LOG_FILE_SIZE = "16M"
_BUFFER_POOL_SIZE = "64M"
# Unix socket paths are limited to 107 bytes (sun_path); leave a margin.
_MAX_SOCKET_PATH = 100


class MariaDBNotFoundError(RuntimeError):
    """A MariaDB server program is not installed (or not where we look)."""


class MariaDBStartError(RuntimeError):
    """The private server could not be initialised or started."""


class _PortInUseError(MariaDBStartError):
    pass


def _find_program(names: Sequence[str], env_var: str) -> str:
    override = os.environ.get(env_var)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise MariaDBNotFoundError(f"{env_var}={override!r} is not an executable file")
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for directory in _SEARCH_DIRS:
        for name in names:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    searched = ", ".join(("PATH", *_SEARCH_DIRS))
    raise MariaDBNotFoundError(
        f"{names[0]} was not found (searched {searched}). Install it with: {INSTALL_HINT}"
    )


def find_mariadbd() -> str:
    """Path of the ``mariadbd`` server binary (env ``SLUICE_MARIADBD`` overrides the search)."""
    return _find_program(("mariadbd",), "SLUICE_MARIADBD")


def find_install_db() -> str:
    """Path of ``mariadb-install-db`` (env ``SLUICE_MARIADB_INSTALL_DB`` overrides the search)."""
    return _find_program(("mariadb-install-db", "mysql_install_db"), "SLUICE_MARIADB_INSTALL_DB")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class PrivateMariaDB:
    """A ``mariadbd`` of our own, with ROW binlog, on a free port of 127.0.0.1.

    ``base_dir`` holds ``data/`` (the datadir, binlog ``data/binlog.*`` included),
    ``mariadbd.err`` (error log), ``mariadbd.pid``, ``mariadbd.sock`` and ``install-db.log``.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        server_id: int = 1,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
        mariadbd: str | None = None,
        install_db: str | None = None,
    ) -> None:
        self._base_dir = Path(base_dir).absolute()
        self._server_id = server_id
        self._port = port
        self._port_fixed = port is not None
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._mariadbd = mariadbd
        self._install_db = install_db
        self._proc: subprocess.Popen[bytes] | None = None
        self._has_started = False

    # ------------------------------------------------------------------ locations

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def datadir(self) -> Path:
        return self._base_dir / "data"

    @property
    def error_log(self) -> Path:
        return self._base_dir / "mariadbd.err"

    @property
    def pid_file(self) -> Path:
        return self._base_dir / "mariadbd.pid"

    @property
    def socket_path(self) -> Path:
        path = self._base_dir / "mariadbd.sock"
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(os.fsencode(self._base_dir)).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"sluice-mariadb-{digest}.sock"

    # ------------------------------------------------------------------ connection facts

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The TCP port; chosen (free at that moment) on first use, then kept for restarts."""
        if self._port is None:
            self._port = _free_port(self.host)
        return self._port

    @property
    def user(self) -> str:
        return "root"

    @property
    def password(self) -> str:
        return ""

    @property
    def server_id(self) -> int:
        return self._server_id

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server (no database), e.g. ``mysql+pymysql://root@127.0.0.1:P/``."""
        return f"mysql+pymysql://{self.user}@{self.host}:{self.port}/"

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` (also usable as replication settings)."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
        }

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def connect(self, database: str | None = None, **kw: Any) -> Connection:
        """A new pymysql connection (autocommit on, utf8mb4); ``kw`` overrides the defaults."""
        params: dict[str, Any] = {
            **self.connection_kwargs,
            "autocommit": True,
            "charset": "utf8mb4",
            "connect_timeout": 10,
        }
        if database is not None:
            params["database"] = database
        params.update(kw)
        return pymysql.connect(**params)

    # ------------------------------------------------------------------ lifecycle

    def server_args(self) -> list[str]:
        """The full ``mariadbd`` command line used by :meth:`start`."""
        return [
            self._mariadbd or find_mariadbd(),
            "--no-defaults",
            f"--user={_current_user()}",
            f"--datadir={self.datadir}",
            f"--bind-address={self.host}",
            f"--port={self.port}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.error_log}",
            f"--server-id={self._server_id}",
            f"--log-bin={self.datadir / 'binlog'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            f"--innodb-buffer-pool-size={_BUFFER_POOL_SIZE}",
            f"--innodb-log-file-size={_INNODB_LOG_FILE_SIZE}",
            "--innodb-buffer-pool-dump-at-shutdown=OFF",
            "--innodb-buffer-pool-load-at-startup=OFF",
            "--skip-name-resolve",
            "--max-allowed-packet=64M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            *self._extra_args,
        ]

    def start(self) -> Self:
        """Initialise the datadir if needed, start ``mariadbd`` and wait until it accepts logins.

        Does nothing if this instance's server is already running.
        """
        if self.running:
            return self
        self._proc = None
        self._mariadbd = self._mariadbd or find_mariadbd()
        self._base_dir.mkdir(parents=True, exist_ok=True)
        self._initialise()
        self._stop_stale_server()
        # A port picked by us may be taken by someone else before mariadbd binds it: pick again.
        attempts = 1 if (self._port_fixed or self._has_started) else 5
        for attempt in range(attempts):
            try:
                self._launch_and_wait()
            except _PortInUseError:
                if attempt == attempts - 1:
                    raise
                self._port = _free_port(self.host)
            else:
                self._has_started = True
                return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """Clean shutdown: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Crash the server (SIGKILL) and reap it; the datadir is kept for a later ``start()``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None

    def error_log_tail(self, lines: int = 40) -> str:
        try:
            text = self.error_log.read_text(errors="replace")
        except OSError:
            return ""
        return _tail(text, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        return f"<PrivateMariaDB {self._base_dir} port={self._port} {state}>"

    # ------------------------------------------------------------------ internals

    def _initialise(self) -> None:
        datadir = self.datadir
        if (datadir / "mysql").is_dir():
            return
        if datadir.exists():
            if any(datadir.iterdir()):
                raise MariaDBStartError(
                    f"{datadir} exists but is not a MariaDB datadir (no mysql/ inside); "
                    "refusing to initialise over it"
                )
            datadir.rmdir()
        # Initialise next to the final place and rename, so a failed run leaves no half datadir.
        scratch = self._base_dir / "data.init"
        shutil.rmtree(scratch, ignore_errors=True)
        cmd = [
            self._install_db or find_install_db(),
            "--no-defaults",
            f"--datadir={scratch}",
            f"--user={_current_user()}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            f"--innodb-log-file-size={_INNODB_LOG_FILE_SIZE}",
            f"--innodb-buffer-pool-size={_BUFFER_POOL_SIZE}",
        ]
        log_path = self._base_dir / "install-db.log"
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise MariaDBStartError(f"mariadb-install-db timed out: {' '.join(cmd)}") from exc
        output = result.stdout.decode(errors="replace")
        log_path.write_text(output)
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise MariaDBStartError(
                f"mariadb-install-db failed (exit {result.returncode}): {' '.join(cmd)}\n"
                f"{_tail(output, 30)}\n(full output in {log_path})"
            )
        scratch.rename(datadir)

    def _stop_stale_server(self) -> None:
        """Stop a leftover mariadbd on our datadir (e.g. from a crashed test run).

        It would hold the InnoDB lock and make the new server retry for minutes.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if os.fsencode(f"--datadir={self.datadir}") not in argv or not _pid_alive(pid):
            return
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.05)
        raise MariaDBStartError(f"could not stop stale mariadbd pid {pid} on {self.datadir}")

    def _log_since(self, offset: int) -> str:
        try:
            with self.error_log.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _launch_and_wait(self) -> None:
        try:
            offset = self.error_log.stat().st_size
        except OSError:
            offset = 0
        args = self.server_args()
        with self.error_log.open("ab") as log:
            # Own session: a Ctrl-C in the terminal reaches the test runner, whose teardown then
            # stops the server cleanly, instead of killing the server first.
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
                start_new_session=True,
            )
        self._proc = proc
        expected_datadir = str(self.datadir).rstrip("/")
        deadline = time.monotonic() + self._startup_timeout
        last_error: Exception | None = None
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                log_text = self._log_since(offset)
                if "Address already in use" in log_text and not self._has_started:
                    raise _PortInUseError(
                        f"port {self.port} is already in use; "
                        f"tail of {self.error_log}:\n{_tail(log_text, 20)}"
                    )
                raise MariaDBStartError(
                    f"mariadbd exited with code {code} while starting; "
                    f"tail of {self.error_log}:\n{_tail(log_text, 40)}"
                )
            try:
                conn = pymysql.connect(
                    connect_timeout=2, read_timeout=3, write_timeout=3, **self.connection_kwargs
                )
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT @@datadir")
                        row = cur.fetchone()
                finally:
                    conn.close()
                # Make sure we talk to our server, not to whoever else holds the port.
                if row is not None and str(row[0]).rstrip("/") == expected_datadir:
                    return
                last_error = RuntimeError(f"port {self.port} is served by datadir {row!r}")
            except pymysql.MySQLError as exc:
                last_error = exc
            log_text = self._log_since(offset)
            if "Unable to lock" in log_text:
                self.kill()
                raise MariaDBStartError(
                    f"{self.datadir} is in use by another mariadbd; "
                    f"tail of {self.error_log}:\n{_tail(log_text, 20)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise MariaDBStartError(
                    f"mariadbd did not accept connections on {self.host}:{self.port} within "
                    f"{self._startup_timeout:.0f}s (last error: {last_error}); "
                    f"tail of {self.error_log}:\n{_tail(self._log_since(offset), 40)}"
                )
            time.sleep(0.05)
