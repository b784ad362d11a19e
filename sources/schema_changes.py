"""Schema-change and truncate records: what a source job publishes for DDL on captured tables.

A statement that changes a captured table becomes one control event in *every* partition of the
table's CDC topic, in the usual batch format (app/records.py), so each partition's consumer sees
it exactly between the last row of the old shape and the first row of the new one:

- op ``"s"``: the table's shape changed (CREATE, ALTER, RENAME, DROP); the batch's ``schema`` is
  the new shape, the event carries the statement (``ddl``) and, where they apply,
  ``renamed_columns`` ({old: new}), ``renamed_from``/``renamed_to`` (``"db.table"``) and
  ``dropped: true``;
- op ``"t"``: TRUNCATE TABLE (a statement without row events); the batch's schema is the
  table's current one.

A record goes to a given partition under a key that the default partitioner sends there
(:func:`partition_keys`); its event has ``"key": null``.

When the record is published: the job commits everything before the statement first. An op
``"t"`` or a drop is published at once. The new shape of a CREATE or ALTER is taken from the first
row event of the table after the statement (its table map is exact at that position), so the
op ``"s"`` waits for that row; if the job must commit its progress past the statement before
such a row came, the shape is read from information_schema then (exact while the reader is
caught up; while it lags, possibly a later shape, see sources/schema_history.py). An ALTER
whose shape turns out unchanged (an index, a comment) publishes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from app.records import encode_key
from sources.schema import TableSchema
from sources.writer import partition_for


@functools.cache
def partition_keys(partitions: int) -> tuple[bytes, ...]:
    """One message key per partition, each hashing to its partition's index."""
    keys: list[bytes | None] = [None] * partitions
    i = 0
    while any(k is None for k in keys):
        key = encode_key(["__sluice_partition__", i])
        p = partition_for(key, partitions)
        if keys[p] is None:
            keys[p] = key
        i += 1
    return tuple(k for k in keys if k is not None)


def control_event(
    op: str, pos_key: str, source: dict[str, Any], ddl: str, **extra: Any
) -> dict[str, Any]:
    """An op "s" or "t" event (see app/records.py)."""
    return {
        "op": op,
        "key": None,
        "before": None,
        "after": None,
        "pos": pos_key,
        "source": source,
        "ddl": ddl,
        **extra,
    }


@dataclass
class PendingChange:
    """An op "s" waiting for the table's new shape (its first row, or the next commit)."""

    pos_key: str
    source: dict[str, Any]
    ddl: str
    extra: dict[str, Any] = field(default_factory=dict)
    always: bool = False  # publish even if the shape did not change (CREATE)
    before: TableSchema | None = None  # the shape before the statement
