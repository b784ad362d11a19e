"""The watermark snapshot's pure parts: the key range test and the reconciliation of chunk rows
with the binlog changes of their window; the source option that chooses the method."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from app.errors import ConfigError
from app.pipeline import BinlogSource, parse_pipeline
from sources.binlog import RowChange
from sources.schema import Column, TableSchema
from sources.values import row_normaliser
from sources.watermark_snapshot import KeyRange, Reconciler


def _schema(key_type: str = "int", pk: tuple[str, ...] = ("id",)) -> TableSchema:
    cols = (Column("id", key_type, key_type), Column("n", "int", "int"))
    return TableSchema("db", "t", cols, pk)


def _change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> RowChange:
    return RowChange("db", "t", op, before, after)


def test_key_range_is_half_open_and_exact_for_ordered_types() -> None:
    keys = KeyRange(_schema(), [10], [20])
    assert keys.ordered
    assert [keys.may_hold({"id": i}) for i in (10, 11, 20, 21)] == [False, True, True, False]
    assert KeyRange(_schema(), None, [20]).may_hold({"id": -(10**9)})
    assert KeyRange(_schema(), [20], None).may_hold({"id": 10**12})


def test_key_range_keeps_what_it_cannot_order() -> None:
    # Strings under a collation, a NULL, a bound decoded from JSON: never excluded.
    assert not KeyRange(_schema("varchar"), ["a"], ["b"]).ordered
    assert KeyRange(_schema("varchar"), ["a"], ["b"]).may_hold({"id": "zzz"})
    when = KeyRange(_schema("datetime"), ["2024-01-01T00:00:00"], None)
    assert when.may_hold({"id": dt.datetime(2020, 1, 1)})
    assert not KeyRange(_schema("decimal"), [decimal.Decimal("1.5")], None).may_hold(
        {"id": decimal.Decimal("1.50")}
    )
    assert not KeyRange(_schema(pk=()), None, None).ordered


def test_reconcile_applies_the_window_in_order() -> None:
    schema = _schema()
    rec = Reconciler(schema, row_normaliser(schema.columns), KeyRange(schema, None, [4]))
    for i in range(1, 5):
        rec.add_read({"id": i, "n": 0})
    rec.apply(_change("u", {"id": 2, "n": 0}, {"id": 2, "n": 5}))
    rec.apply(_change("d", {"id": 3, "n": 0}, None))
    rec.apply(_change("u", {"id": 4, "n": 0}, {"id": 40, "n": 0}))  # moved out of range
    rec.apply(_change("c", None, {"id": 0, "n": 1}))
    rec.apply(_change("c", None, {"id": 9, "n": 1}))  # another chunk's key
    rec.apply(_change("c", None, {"id": 3, "n": 7}))  # deleted, then inserted again
    assert sorted((r["id"], r["n"]) for r in rec.rows()) == [(0, 1), (1, 0), (2, 5), (3, 7)]
    assert rec.applied == 5


def test_reconcile_without_primary_key_is_a_multiset() -> None:
    schema = _schema(pk=())
    rec = Reconciler(schema, row_normaliser(schema.columns), KeyRange(schema, None, None))
    for row in ({"id": 1, "n": 0}, {"id": 1, "n": 0}, {"id": 2, "n": 0}):
        rec.add_read(row)
    rec.apply(_change("d", {"id": 1, "n": 0}, None))
    rec.apply(_change("u", {"id": 2, "n": 0}, {"id": 2, "n": 1}))
    rec.apply(_change("c", None, {"id": 2, "n": 1}))
    assert sorted((r["id"], r["n"]) for r in rec.rows()) == [(1, 0), (2, 1), (2, 1)]


def _source(extra: str) -> str:
    return f"""
sources:
  - name: shop
    url: mysql://root@db:3306
    server_id: 4001
{extra}
sinks: []
"""


def test_snapshot_method_option() -> None:
    assert BinlogSource.model_fields["snapshot_method"].default == "auto"
    parsed = parse_pipeline(_source("    snapshot_method: watermark"))
    assert parsed.sources[0].snapshot_method == "watermark"
    with pytest.raises(ConfigError, match="snapshot_method"):
        parse_pipeline(_source("    snapshot_method: locking"))
