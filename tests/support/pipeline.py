"""The pipeline file and worker environment of the end-to-end tests: one source, given sinks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.broker import EmbeddedBroker
from devstack.mariadb import PrivateMariaDB


def sink(name: str, url: str, **options: str) -> str:
    """One sink of source ``shop`` as a YAML flow mapping, e.g. ``mode="append"``."""
    extra = "".join(f', {key}: "{value}"' for key, value in options.items())
    return f'{{name: {name}, source: shop, url: "{url}"{extra}}}'


def write_pipeline(
    tmp_path: Path,
    db: PrivateMariaDB,
    database: str,
    prefix: str,
    sinks: Sequence[str],
    **source_options: str,
) -> Path:
    """``pipeline.yaml``: source ``shop`` captures ``database`` into topics ``prefix``.*."""
    options = "".join(f"    {key}: {value}\n" for key, value in source_options.items())
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""
sources:
  - name: shop
    url: mysql://root@127.0.0.1:{db.port}
    server_id: {abs(hash(prefix)) % 100000 + 1000}
    tables:
      include: ["{database}.*"]
{options}    topic_prefix: {prefix}
sinks:
"""
        + "".join(f"  - {s}\n" for s in sinks)
    )
    return path


def pg_pipeline(
    tmp_path: Path,
    db: PrivateMariaDB,
    database: str,
    prefix: str,
    target: str,
    table_name: str = "{table}",
    **source_options: str,
) -> Path:
    """The common case: one PostgreSQL sink named ``pg``."""
    sinks = [sink("pg", target, table_name=table_name)]
    return write_pipeline(tmp_path, db, database, prefix, sinks, **source_options)


def worker_env(broker: EmbeddedBroker, pipeline: Path, app_id: str) -> dict[str, str]:
    return {
        "SLUICE_BROKER_URL": broker.url,
        "SLUICE_EMBEDDED_BROKER": "true",
        "SLUICE_PIPELINE_FILE": str(pipeline),
        "SLUICE_APP_ID": app_id,
        "SLUICE_SESSION_TIMEOUT_S": "6",
        "SLUICE_HEARTBEAT_INTERVAL_S": "1",
        "SLUICE_HEARTBEAT_S": "1",  # source heartbeats while idle
        # Neither is the embedded broker's auto-create default (4): counts prove explicit creation.
        "SLUICE_TOPIC_PARTITIONS": "3",
        "SLUICE_CONTROL_PARTITIONS": "5",
    }
