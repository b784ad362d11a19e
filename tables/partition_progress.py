"""Per CDC topic partition: changes seen and the newest source position (RocksDB-backed).

Keyed by ``<topic>/<partition>`` and written by the agent processing that partition, so every key
lives in the partition (and on the worker) that owns it.
"""

from __future__ import annotations

from app.main import app, settings

partition_progress = app.Table(
    "partition-progress",
    default=dict,
    key_type=str,
    partitions=settings.topic_partitions,
)
