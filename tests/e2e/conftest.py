"""End-to-end tests each get a PostgreSQL database of their own: their target tables share names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.postgres import create_database, drop_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_database("sluice_e2e")
    try:
        yield url
    finally:
        drop_database(url)
