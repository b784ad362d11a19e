"""Every topic sluice uses, with its partition count and config, created before first use.

Nothing relies on broker auto-creation: the embedded broker would make 4 partitions whatever we
intend, and a wrong count silently breaks per-key ordering and table routing.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

logger = logging.getLogger(__name__)

# Names of the app's own topics, prefixed with the app id so several apps share one broker.


def positions_topic(app_id: str) -> str:
    """Committed progress of every source job, keyed by job name (compacted, 1 partition)."""
    return f"{app_id}-positions"


def control_topic(app_id: str) -> str:
    """One partition per job slot; the worker that owns a slot runs its jobs."""
    return f"{app_id}-jobs"


def delivery_topic(app_id: str) -> str:
    """Checked changes for the sink agent, copartitioned with the CDC topics."""
    return f"{app_id}-delivery"


def dead_letter_topic(app_id: str) -> str:
    """Records that can never be applied, with the reason and where they came from."""
    return f"{app_id}-dead-letters"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def cdc_topic(prefix: str, database: str, table: str) -> str:
    """``<prefix>.<database>.<table>``; characters Kafka forbids become '_'."""
    return _UNSAFE.sub("_", f"{prefix}.{database}.{table}")


def heartbeat_topic(prefix: str) -> str:
    """Per topic prefix; always exists, so the CDC agent has a topic before any table has."""
    return f"{prefix}{HEARTBEAT_SUFFIX}"


HEARTBEAT_SUFFIX = ".__heartbeat"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


COMPACTED = {"cleanup.policy": "compact"}


async def ensure_topics(bootstrap: list[str], specs: Iterable[TopicSpec]) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    wanted = {s.name: s for s in specs}
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for n, s in wanted.items() if n not in existing]
        if not missing:
            return
        # Another worker may win the race; its partition count comes from the same setting.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, 1, topic_configs=dict(s.config)) for s in missing]
            )
        logger.info("created topics %s", ", ".join(s.name for s in missing))
    finally:
        await admin.close()


async def list_topics(bootstrap: list[str]) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
