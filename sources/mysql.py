"""Connections to the source server, and the checks that it can be captured from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

from app.errors import PositionPurged, SourceConfigError
from sources.position import BinlogPosition


@dataclass(frozen=True)
class SourceAddress:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> SourceAddress:
        u = make_url(url.replace("mariadb://", "mysql://", 1))
        return cls(u.host or "127.0.0.1", u.port or 3306, u.username or "root", u.password or "")

    def __repr__(self) -> str:  # never show the password
        return f"SourceAddress({self.user}@{self.host}:{self.port})"

    def connect(self, **kw: Any) -> pymysql.connections.Connection:
        options: dict[str, Any] = {"charset": "utf8mb4", "autocommit": True, "connect_timeout": 10}
        options.update(kw)
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, **options
        )


REQUIRED_VARIABLES = {
    "log_bin": "ON",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
}


def preflight(conn: pymysql.connections.Connection) -> None:
    """Refuse to capture from a server whose binlog would lose or hide changes."""
    with conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('log_bin','binlog_format','binlog_row_image','binlog_row_metadata',"
            "'log_bin_compress','binlog_transaction_compression')"
        )
        found = {k.lower(): str(v).upper() for k, v in cur.fetchall()}
    wrong = [
        f"{name}={found.get(name, 'missing')} (set {name}={want})"
        for name, want in REQUIRED_VARIABLES.items()
        if found.get(name) != want
    ]
    for name in ("log_bin_compress", "binlog_transaction_compression"):
        if found.get(name) == "ON":
            wrong.append(f"{name}=ON (set {name}=OFF: compressed events cannot be decoded)")
    if wrong:
        raise SourceConfigError(
            "source server is not ready for change capture: "
            + "; ".join(wrong)
            + ". Put these in the server's my.cnf under [mysqld] and restart it "
            "(log_bin needs a restart; the others can be SET GLOBAL)."
        )


def current_position(conn: pymysql.connections.Connection) -> BinlogPosition:
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    if not row:
        raise SourceConfigError("SHOW MASTER STATUS returned nothing: is log_bin on?")
    return BinlogPosition.at(row[0], int(row[1]))


def oldest_binlog(conn: pymysql.connections.Connection) -> BinlogPosition:
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        rows = cur.fetchall()
    return BinlogPosition.at(rows[0][0], 4)


def check_position_available(conn: pymysql.connections.Connection, pos: BinlogPosition) -> None:
    """A purged resume position is an error with the way out, never a silent gap."""
    oldest = oldest_binlog(conn)
    if pos.file_seq < oldest.file_seq:
        raise PositionPurged(
            f"resume position {pos} was purged from the source (oldest binlog is {oldest.file}). "
            "Changes in between are lost to the binlog: set 'on_purged: resnapshot' on the source "
            "to take a new snapshot of its tables (see README, 'Operations')."
        )
