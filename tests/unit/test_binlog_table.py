"""sources/binlog.py replaces pymysqlreplication's ``Table.__init__``: same table, cheaper."""

from __future__ import annotations

from typing import Any

import pytest
from pymysqlreplication.table import Table

import sources.binlog  # noqa: F401  (installs the replacement)


class _Column:
    """A pymysqlreplication Column's public attributes (what ``Column.data`` lists)."""

    def __init__(self, name: str, is_primary: bool) -> None:
        self.name = name
        self.is_primary = is_primary
        self.type = 8

    @property
    def data(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _library_primary_key(columns: list[_Column]) -> Any:
    """The library's rule, through ``Column.data`` as it reads it."""
    pk = [c.data["name"] for c in columns if c.data["is_primary"]]
    return "" if not pk else pk[0] if len(pk) == 1 else tuple(pk)


@pytest.mark.parametrize("flags", [(), (False, False), (True, False), (True, False, True)])
def test_the_primary_key_is_the_librarys(flags: tuple[bool, ...]) -> None:
    columns = [_Column(f"c{i}", f) for i, f in enumerate(flags)]
    t = Table(7, "db", "t", columns)
    assert t.primary_key == _library_primary_key(columns)
    assert t.data == {"table_id": 7, "schema": "db", "table": "t", "columns": columns,
                      "primary_key": t.primary_key, "column_name_flag": False}  # fmt: skip


def test_a_given_primary_key_is_kept() -> None:
    t = Table(1, "db", "t", [_Column("a", True)], primary_key=("x", "y"), column_name_flag=True)
    assert (t.primary_key, t.column_name_flag) == (("x", "y"), True)
