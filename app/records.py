"""The records that travel through Kafka, and their encoding.

A CDC topic message carries a *batch* of change events of one table that all belong to the same
partition (Faust costs ~110 µs per message, far more than a row costs anywhere else; see
docs/PERFORMANCE.md). The message key is the key of the batch's first row, so the default
partitioner places the batch where each of its rows belongs.

Message value (JSON)::

    {"v": 1, "db": "shop", "table": "orders",
     "schema": {"columns": [[name, data_type, column_type, nullable], ...], "pk": [...]},
     "events": [ChangeEvent, ...]}

ChangeEvent (JSON object), close to Debezium's envelope::

    {"op": "c"|"u"|"d"|"r", "key": {pk: value}, "before": {...}|null, "after": {...}|null,
     "pos": "<sortable position key>",
     "source": {"server_id", "file", "pos", "row", "ts_ms", "snapshot": bool}}

The batch's ``schema`` is the shape of the rows it carries, taken from the binlog's table map of
each row event (snapshot rows: information_schema at the snapshot). A change of shape starts a
new message, so one message never mixes two shapes.

Two control events carry no row (``"key"``, ``"before"`` and ``"after"`` are null). Each is
written to *every* partition of the table's topic, so every partition sees it in order with its
rows (sources/schema_changes.py)::

    {"op": "s", "pos", "source", "key": null, "before": null, "after": null,
     "ddl": "<the statement>",
     "renamed_columns": {"old": "new"},   # optional: RENAME COLUMN / CHANGE old new
     "renamed_from": "db.table",          # optional: first record of a renamed table's topic
     "renamed_to": "db.table",            # optional: last record of the old name's topic
     "dropped": true}                     # optional: the table is gone (DROP, or renamed away)

A schema change (CREATE, ALTER, RENAME, DROP TABLE): the batch's ``schema`` is the table's new
shape (for a drop, the last one). Rows after it in the partition have that shape.

    {"op": "t", "pos", "source", "key": null, "before": null, "after": null, "ddl": "..."}

TRUNCATE TABLE: every row of the table older than ``pos`` is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

Op = Literal["c", "u", "d", "r", "s", "t"]
ROW_OPS = frozenset({"c", "u", "d", "r"})
CONTROL_OPS = frozenset({"s", "t"})  # schema change, truncate: no row, in every partition
FORMAT_VERSION = 1


def encode_key(values: list[Any]) -> bytes:
    """Row key bytes: the JSON array of the key column values, in key-column order."""
    return orjson.dumps(values)


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)


def decode(data: bytes) -> Any:
    return orjson.loads(data)


@dataclass(frozen=True)
class ChangeBatch:
    """A decoded CDC message."""

    database: str
    table: str
    schema: dict[str, Any]
    events: list[dict[str, Any]]

    @classmethod
    def from_bytes(cls, data: bytes) -> ChangeBatch:
        d = orjson.loads(data)
        if not isinstance(d, dict) or d.get("v") != FORMAT_VERSION:
            raise ValueError(f"not a sluice change batch (version {d.get('v')!r})")
        return cls(d["db"], d["table"], d["schema"], d["events"])

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "db": self.database,
                "table": self.table,
                "schema": self.schema,
                "events": self.events,
            }
        )
