"""The pipeline definition file: which sources feed which sinks.

A YAML file validated into typed models, with errors that name the offending field. Values may
reference the environment as ``${NAME}`` or ``${NAME:-default}`` so credentials stay out of the
file; a reference to an unset variable without a default is an error, never an empty string.

The shape grows by adding kinds, not by changing fields: a source has a ``kind`` (binlog today;
incremental batch reads later), a sink has a ``kind`` (sql today; files later) and each sink names
its own consistency level and write mode.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from app.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableFilter(_Model):
    """Include/exclude patterns over ``database.table`` (shell wildcards)."""

    include: tuple[str, ...] = ("*.*",)
    exclude: tuple[str, ...] = ()

    def matches(self, database: str, table: str) -> bool:
        name = f"{database}.{table}"
        if not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)


class BinlogSource(_Model):
    name: str = Field(pattern=_NAME)
    kind: Literal["binlog"] = "binlog"
    url: SecretStr = Field(description="mysql://user:password@host:port of the source server")
    server_id: int = Field(
        ge=1, le=2**32 - 1, description="Replica id of this reader; unique on the source server."
    )
    tables: TableFilter = TableFilter()
    snapshot: Literal["initial", "never"] = "initial"
    snapshot_method: Literal["auto", "consistent", "watermark"] = Field(
        "auto",
        description=(
            "How the snapshot finds its binlog position: consistent (MariaDB's "
            "binlog_snapshot_* under one read view), watermark (low/high binlog positions around "
            "each chunk, reconciled with the binlog in between; any server, MySQL 8), or auto "
            "(consistent where the server has binlog_snapshot_file, else watermark)"
        ),
    )
    on_purged: Literal["fail", "resnapshot"] = Field(
        "fail",
        description=(
            "When the resume position was purged from the binlog: fail with an error naming the "
            "fix, or take a new snapshot of the source's tables (versioned writes keep targets "
            "correct; rows deleted while the binlog was missing stay in the targets)"
        ),
    )
    topic_prefix: str = Field("sluice", pattern=r"^[A-Za-z0-9._-]+$")


SQL_DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


class SqlSink(_Model):
    name: str = Field(pattern=_NAME)
    kind: Literal["sql"] = "sql"
    url: SecretStr = Field(description="SQLAlchemy URL of the target database")
    source: str = Field(description="Name of the source whose tables this sink receives")
    tables: TableFilter = TableFilter()
    mode: Literal["upsert", "append"] = Field(
        "upsert",
        description=(
            "upsert: mirror each source table (tables without a primary key as a multiset of "
            "rows); append: one change-log row per source change in <table>_changes"
        ),
    )
    consistency: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description=(
            "at_least_once: redelivered changes are re-applied as no-ops (position versioning); "
            "exactly_once: also skip messages at or below the stored offset, after checking "
            "once per partition assignment that the stored offset still names the same record"
        ),
    )
    target_schema: str | None = Field(None, description="Schema for target tables")
    schema_changes: Literal["evolve", "freeze", "discard"] = Field(
        "evolve",
        description=(
            "evolve: apply safe source schema changes (add columns, widen types), refuse unsafe "
            "ones with a clear error; freeze: never alter an existing target table; discard: as "
            "freeze, but only log what a change would have needed"
        ),
    )
    table_name: str = Field(
        "{table}",
        description=(
            "Target table name; '{database}' and '{table}' are replaced. Default '{table}', "
            "and '{table}_changes' in mode append."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _append_table_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode") == "append" and "table_name" not in data:
            return {**data, "table_name": "{table}_changes"}
        return data

    @field_validator("url")
    @classmethod
    def _supported_dialect(cls, v: SecretStr) -> SecretStr:
        scheme = v.get_secret_value().split(":", 1)[0].split("+", 1)[0].lower()
        if scheme not in SQL_DIALECTS:
            raise ValueError(
                f"target dialect {scheme!r} is not supported (use one of {SQL_DIALECTS})"
            )
        return v

    @field_validator("table_name")
    @classmethod
    def _table_name_has_table(cls, v: str) -> str:
        if "{table}" not in v:
            raise ValueError("must contain '{table}' so source tables do not collide")
        return v


class DebeziumSink(_Model):
    """Debezium-format Kafka topics, one event per message, for Debezium-aware consumers.

    At-least-once, as a Debezium connector is: after a crash some events may be sent again;
    their ``source`` block (file, pos, row) identifies duplicates.
    """

    name: str = Field(pattern=_NAME)
    kind: Literal["debezium"]
    source: str = Field(description="Name of the source whose tables this sink receives")
    tables: TableFilter = TableFilter()
    topic_prefix: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Output topics are <topic_prefix>.<database>.<table> (Debezium's topic.prefix)",
    )
    schemas_enable: bool = Field(
        False, description="Wrap key and value as {schema, payload} (Kafka JsonConverter)"
    )
    tombstones_on_delete: bool = True


def _sink_kind(v: Any) -> str:
    return str(v.get("kind", "sql") if isinstance(v, dict) else getattr(v, "kind", "sql"))


Sink = Annotated[
    Annotated[SqlSink, Tag("sql")] | Annotated[DebeziumSink, Tag("debezium")],
    Discriminator(_sink_kind),
]


class Pipeline(_Model):
    sources: tuple[BinlogSource, ...] = Field(min_length=1)
    sinks: tuple[Sink, ...] = ()

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, v: tuple[Sink, ...]) -> tuple[Sink, ...]:
        names = [s.name for s in v]
        if len(names) != len(set(names)):
            raise ValueError(f"sink names must be unique, got {names}")
        return v

    def model_post_init(self, __context: Any) -> None:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ConfigError(f"source names must be unique, got {names}")
        for sink in self.sinks:
            if sink.source not in names:
                raise ConfigError(
                    f"sink {sink.name!r} reads source {sink.source!r}, "
                    f"which is not defined (sources: {names})"
                )

    def source(self, name: str) -> BinlogSource:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


def _expand_env(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable ${{{var}}} is not set")

        return _ENV_REF.sub(repl, value)
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _where(loc: tuple[int | str, ...]) -> str:
    """``sinks.0.table_name``: the field path without the union tag pydantic inserts."""
    parts = [str(p) for p in loc if p not in ("sql", "debezium")]
    return ".".join(parts) or "(top)"


def parse_pipeline(text: str, origin: str = "<pipeline>") -> Pipeline:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'sources' and 'sinks'")
    raw = _expand_env(raw, origin)
    try:
        return Pipeline.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{origin}: {problems}") from None


def load_pipeline(path: Path) -> Pipeline:
    if not path.exists():
        raise ConfigError(
            f"pipeline file {path} not found; set SLUICE_PIPELINE_FILE or create it "
            "(see README, 'Configuration')"
        )
    return parse_pipeline(path.read_text(), str(path))
