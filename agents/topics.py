"""The Faust topic objects the agents consume and produce (names live in app/topics.py)."""

from __future__ import annotations

import re

from app.main import app, pipeline, settings
from app.topics import control_topic, dead_letter_topic, delivery_topic, heartbeat_topic

_prefixes = sorted({s.topic_prefix for s in pipeline.sources})

# Raw CDC topics, one per source table, created by the source jobs. Faust cannot subscribe by
# pattern ("XXX pattern does not work" in its aiokafka driver), so the list starts with each
# source's heartbeat topic and agents/discovery.py appends table topics as they appear.
cdc = app.topic(
    *(heartbeat_topic(p) for p in _prefixes),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)
cdc.topics = list(cdc.topics)  # a list shared with the agent's clones, so it can grow
CDC_PATTERN = re.compile("^(" + "|".join(re.escape(p) for p in _prefixes) + r")\.[^.]+\..+$")

# Checked changes for the sink agents, copartitioned with the CDC topics (same key, same count).
delivery = app.topic(
    delivery_topic(settings.app_id),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)

# Job slots: the worker owning partition p runs the source jobs assigned to slot p.
control = app.topic(
    control_topic(settings.app_id),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.control_partitions,
    internal=True,
)

dead_letters = app.topic(
    dead_letter_topic(settings.app_id),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=1,
    internal=True,
)
