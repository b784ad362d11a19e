"""Process settings: the only place that reads the environment.

Every setting is read from an environment variable prefixed ``SLUICE_`` (or a ``.env`` file in
the working directory). Secrets never live here as literals: URLs may carry credentials, so they
are typed as ``SecretStr`` and only revealed where a connection is made.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_file=".env", extra="ignore")

    app_id: str = Field(
        "sluice",
        description="Faust app id = consumer group. Workers with the same id share the work.",
    )
    broker_url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, 'kafka://host:port[;host:port]'.",
    )
    embedded_broker: bool = Field(
        False,
        description=(
            "The broker is the embedded Tansu broker: apply the aiokafka compatibility layer "
            "(InitProducerId v3). Leave off for Apache Kafka or Redpanda."
        ),
    )
    pipeline_file: Path = Field(
        Path("pipeline.yaml"), description="Pipeline definition: sources, tables, sinks."
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    topic_partitions: int = Field(4, ge=1, description="Partitions of every CDC topic.")
    control_partitions: int = Field(
        8,
        ge=1,
        description="Partitions of the job control topic: at most this many workers run jobs.",
    )
    store: str = Field("rocksdb://", description="Faust table store.")
    session_timeout_s: float = Field(
        30.0, gt=0, description="Kafka group session timeout: how fast a dead worker is noticed."
    )
    heartbeat_interval_s: float = Field(3.0, gt=0)
    commit_interval_s: float = Field(1.0, gt=0, description="Faust offset/transaction commit.")
    fetch_max_wait_ms: int | None = Field(
        None,
        ge=1,
        description=(
            "Longest a worker's fetch waits for data (default: 100 with the embedded broker, "
            "Faust's 1500 otherwise). The embedded broker answers a waiting fetch only when "
            "the wait ends, not when data arrives, so each hop adds up to this much latency."
        ),
    )
    source_flush_interval_s: float = Field(
        0.2, gt=0, description="Longest a source job holds changes before a Kafka transaction."
    )
    source_flush_events: int = Field(
        5000, ge=1, description="Most change events a source job puts in one Kafka transaction."
    )
    source_reader_process: bool = Field(
        True,
        description=(
            "Parse the binlog in a child process of the worker (true) or in a thread of it: "
            "the parse then runs on a core of its own instead of sharing the worker's GIL."
        ),
    )
    source_max_txn_rows: int = Field(
        20000,
        ge=1,
        description=(
            "Most row changes of one source transaction in one Kafka transaction: a larger "
            "source transaction is committed in parts, each a resume point."
        ),
    )
    snapshot_chunk_rows: int = Field(
        10000, ge=1, description="Rows per snapshot chunk: one Kafka transaction, one resume point."
    )
    heartbeat_s: float = Field(
        10.0, gt=0, description="An idle source job commits a heartbeat at least this often."
    )
    sink_batch_size: int = Field(2000, ge=1, description="Most messages a sink writes at once.")
    sink_batch_within_s: float = Field(
        0.2, gt=0, description="Longest a sink waits to fill a batch."
    )
    run_sources: bool = Field(
        True, description="Run source jobs in this worker group (off for a sink-only group)."
    )
    sinks: str | None = Field(
        None,
        description=(
            "Comma-separated sink names this worker group writes (default: all). Give each sink "
            "group its own SLUICE_APP_ID so a slow or failing sink holds back no other."
        ),
    )
    fault_injection: str | None = Field(
        None,
        description=(
            "Testing only: '<point>:<n>' makes the worker exit abruptly (as SIGKILL would) the "
            "n-th time it reaches <point> (sink_before_write, sink_mid_write, sink_after_write)."
        ),
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token required by web views that change anything."
    )

    @property
    def worker_fetch_max_wait_ms(self) -> int | None:
        """The fetch wait for the worker's consumer; None keeps Faust's."""
        if self.fetch_max_wait_ms is not None:
            return self.fetch_max_wait_ms
        return 100 if self.embedded_broker else None

    def runs_sink(self, name: str) -> bool:
        if self.sinks is None:
            return True
        return name in {s.strip() for s in self.sinks.split(",")}

    @property
    def bootstrap_servers(self) -> list[str]:
        """Broker addresses in the form aiokafka expects."""
        hosts = self.broker_url.split("://", 1)[-1]
        return [h.strip() for h in hosts.replace(",", ";").split(";") if h.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
