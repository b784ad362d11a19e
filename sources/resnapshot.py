"""Re-snapshot on demand: read a table (whole, or a primary-key range) again while streaming.

A request travels as a command record on the control topic, to the partition (slot) of its source
job, so the worker running the job gets it wherever the request was made (app/views.py). The job
reads the rows between two binlog transactions with a new consistent read view and tags them with
that view's position: binlog changes it reads afterwards with older positions are no-ops for the
rows the re-snapshot holds (versioned writes), newer ones apply. So a target repaired this way ends
equal to the source for the range, and nothing else moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.errors import ConfigError
from app.pipeline import Pipeline

COMMAND = "resnapshot"


@dataclass(frozen=True)
class ResnapshotRequest:
    source: str
    database: str
    table: str
    # Inclusive bounds on the primary key, as lists in key column order; None: unbounded.
    key_from: list[Any] | None = None
    key_to: list[Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "command": COMMAND,
                "source": self.source,
                "table": self.name,
                "from": self.key_from,
                "to": self.key_to,
            }
        )

    @classmethod
    def from_json(cls, body: Any, pipeline: Pipeline) -> ResnapshotRequest:
        """A request checked against the pipeline; ConfigError names what is wrong."""
        if not isinstance(body, dict):
            raise ConfigError('a re-snapshot request is a JSON object: {"source", "table"}')
        source, table = body.get("source"), body.get("table")
        if not isinstance(source, str) or not isinstance(table, str) or "." not in table:
            raise ConfigError('"source" (a source name) and "table" ("database.table") are needed')
        names = [s.name for s in pipeline.sources]
        if source not in names:
            raise ConfigError(f"unknown source {source!r}; the pipeline has {names}")
        database, _, name = table.partition(".")
        if not pipeline.source(source).tables.matches(database, name):
            raise ConfigError(f"table {table} is not captured by source {source}")
        bounds = []
        for field in ("from", "to"):
            value = body.get(field)
            if value is not None and not isinstance(value, list):
                value = [value]  # a one-column key may be given as a scalar
            bounds.append(value)
        return cls(source, database, name, bounds[0], bounds[1])

    @classmethod
    def from_bytes(cls, data: bytes, pipeline: Pipeline) -> ResnapshotRequest:
        body = orjson.loads(data)
        if not isinstance(body, dict) or body.get("command") != COMMAND:
            raise ConfigError(f"not a {COMMAND} command: {data[:200]!r}")
        return cls.from_json(body, pipeline)
