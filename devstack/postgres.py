"""Throw-away databases on the local PostgreSQL server, for a first run and for tests.

The server is reached through an admin URL, env ``SLUICE_PG_ADMIN_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); its user must be allowed to create and
drop databases.  Database URLs handed out are SQLAlchemy URLs for the psycopg 3 driver.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from sqlalchemy.engine import URL, make_url

__all__ = [
    "DEFAULT_ADMIN_URL",
    "admin_url",
    "create_database",
    "drop_database",
    "ensure_database",
    "postgres_available",
    "temporary_database",
]

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_PROTECTED = frozenset({"postgres", "template0", "template1"})
_MAX_IDENTIFIER = 63  # NAMEDATALEN - 1


def admin_url() -> str:
    """The admin connection URL (env ``SLUICE_PG_ADMIN_URL`` or the default)."""
    return os.environ.get("SLUICE_PG_ADMIN_URL") or DEFAULT_ADMIN_URL


def _libpq_uri(url: URL) -> str:
    """A SQLAlchemy URL (any postgresql+driver) as a libpq connection URI for psycopg."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _database_url(name: str) -> str:
    url = make_url(admin_url()).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _admin_connect(connect_timeout: int = 10) -> psycopg.Connection[TupleRow]:
    return psycopg.connect(
        _libpq_uri(make_url(admin_url())), autocommit=True, connect_timeout=connect_timeout
    )


def postgres_available(timeout: int = 3) -> bool:
    """True if the admin URL accepts a connection and a query within ``timeout`` seconds."""
    try:
        with _admin_connect(connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, OSError):
        return False
    return True


def create_database(name_prefix: str = "sluice") -> str:
    """Create a new, uniquely named, empty database; return its SQLAlchemy (psycopg) URL."""
    prefix = re.sub(r"[^a-z0-9_]+", "_", name_prefix.lower()).strip("_") or "db"
    suffix = uuid.uuid4().hex[:12]
    name = f"{prefix[: _MAX_IDENTIFIER - len(suffix) - 1]}_{suffix}"
    with _admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _database_url(name)


def ensure_database(name: str) -> str:
    """Create the database ``name`` unless it exists; return its SQLAlchemy (psycopg) URL.

    For state that should outlive a run (e.g. the first-run demo target).
    """
    if len(name.encode()) > _MAX_IDENTIFIER:
        raise ValueError(f"database name longer than {_MAX_IDENTIFIER} bytes: {name!r}")
    with _admin_connect() as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            # Another process may create it between the check and here: that is fine too.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _database_url(name)


def drop_database(url: str) -> None:
    """Drop the database named in ``url`` (if it exists), disconnecting its sessions first.

    The drop is done through the admin URL; the admin database and templates are refused.
    """
    name = make_url(url).database
    if not name:
        raise ValueError(f"no database name in {url!r}")
    if name in _PROTECTED or name == make_url(admin_url()).database:
        raise ValueError(f"refusing to drop database {name!r}")
    ident = sql.Identifier(name)
    with _admin_connect() as conn:
        # Refuse new sessions, then end the existing ones (e.g. pooled engines not disposed).
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            return
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        if conn.info.server_version >= 130000:
            stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
        else:
            stmt = sql.SQL("DROP DATABASE IF EXISTS {}").format(ident)
        conn.execute(stmt)


@contextmanager
def temporary_database(name_prefix: str = "sluice") -> Iterator[str]:
    """``create_database`` on enter, ``drop_database`` on exit; yields the URL."""
    url = create_database(name_prefix)
    try:
        yield url
    finally:
        drop_database(url)
