"""Subscribe the CDC agent to table topics as source jobs create them (no restart needed).

Faust cannot subscribe by pattern, so the CDC topic object holds an explicit list that grows:
the topics that exist when the worker starts are found before it subscribes (one join instead of
two), and a timer finds the ones created later, on every worker at about the same time.

Each subscription change is a group rebalance, which on the embedded broker costs the listing
interval, the 3-second resubscription lock and the broker's hold on the first JoinGroup: about
9 s before the first snapshot row reaches a sink. So at start the worker also creates the topics
of the tables its sources capture now (the job creates the same ones, idempotently), and a new
pipeline's first snapshot flows without a rebalance. Best effort: a source the worker cannot
reach (a sink-only group without access to it) is left to the timer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from agents.topics import CDC_PATTERN, cdc
from app.main import app, pipeline, settings
from app.topics import TopicSpec, cdc_topic, ensure_topics, list_topics
from sources.mysql import SourceAddress
from sources.schema import load_schemas

logger = logging.getLogger(__name__)

# Faust waits 45 s after a subscription change before resubscribing, to coalesce changes;
# a new table should flow sooner than that. Every resubscription is a group rebalance.
conductor: Any = app.topics
conductor._resubscribe_sleep_lock_seconds = 3.0
cdc_topics: list[str] = cdc.topics  # type: ignore[assignment]  # a list: see agents/topics.py


def _new_topics(names: set[str]) -> list[str]:
    return sorted(
        n for n in names if CDC_PATTERN.match(n) and n not in cdc_topics and n not in _pending
    )


def _captured_table_topics() -> list[str]:
    """The CDC topics of the tables the sources capture now (those the worker can reach)."""
    names: list[str] = []
    for source in pipeline.sources:
        try:
            conn = SourceAddress.from_url(source.url.get_secret_value()).connect(
                connect_timeout=5, read_timeout=10
            )
            try:
                tables = load_schemas(conn, source.tables)
            finally:
                conn.close()
        except Exception as exc:
            logger.info(
                "source %s: table topics not created at start (%s); the source job creates them",
                source.name,
                type(exc).__name__,
            )
            continue
        names += [cdc_topic(source.topic_prefix, db, table) for db, table in tables]
    return names


async def _create_and_list_topics() -> set[str]:
    names = _captured_table_topics()
    if names:
        specs = [TopicSpec(n, settings.topic_partitions) for n in names]
        await ensure_topics(settings.bootstrap_servers, specs)
    return await list_topics(settings.bootstrap_servers)


def discover_at_start() -> None:
    """Blocking, before the event loop runs: create the topics of the captured tables, then add
    the CDC topics that exist."""
    found: set[str] = set()

    def probe() -> None:
        try:
            found.update(asyncio.run(_create_and_list_topics()))
        except Exception as exc:  # the broker may not be up yet; the timer catches up
            logger.warning("could not list topics at start: %s", exc)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(20)
    cdc_topics.extend(_new_topics(found))


# Topics found but not yet in the list: Faust's conductor drops a change flagged while the group
# is rebalancing (as at start, when a source job creates its first topics), so names wait here
# until the group is stable.
_pending: set[str] = set()
_unconfirmed: set[str] = set()


def _subscribe(names: set[str]) -> None:
    _pending.update(_new_topics(names))
    _flush_pending()


def _flush_pending() -> None:
    if not _pending or app.rebalancing:
        return
    new = sorted(_pending)
    _pending.clear()
    # The iterator clones of this topic share its list, so the running agent sees the names.
    cdc_topics.extend(new)
    conductor._flag_changes()
    logger.info("subscribing to new CDC topics: %s", ", ".join(new))


def topic_created(name: str) -> None:
    """A source job of this worker created ``name``. Not subscribed at once: every worker must
    subscribe at about the same time (their 3-second listings, coalesced by the 3-second lock).
    A worker that subscribes alone triggers a rebalance in which the group's members subscribe
    to different topics; Faust's assignor then no longer keeps the CDC and delivery partitions
    together (its copartitioned groups are per set of subscribers), transactional ids of two
    workers collide, and records were lost (e2e failover test)."""
    logger.debug("source job created %s; the next listing subscribes it", name)


def _subscribed() -> set[str]:
    try:
        return set(app.consumer._thread._ensure_consumer().subscription())  # type: ignore[attr-defined]
    except Exception:  # no consumer yet
        return set()


_conductor_assigned = conductor.on_partitions_assigned


async def _on_partitions_assigned(assigned: set[Any]) -> None:
    """The group's leader may give this worker partitions of a CDC topic that another member
    subscribed to and this one has not found yet; without it in the list, Faust's conductor has
    no channel for those partitions and their records are never processed here. Add such
    topics before the conductor indexes the assignment (and resubscribe afterwards)."""
    names = {tp.topic for tp in assigned}
    found = sorted((set(_new_topics(names)) | _pending) & names)
    if found:
        _pending.difference_update(found)
        cdc_topics.extend(found)
        conductor._flag_changes()
        logger.info("assigned CDC topics not yet subscribed here: %s", ", ".join(found))
    await _conductor_assigned(assigned)


conductor.on_partitions_assigned = _on_partitions_assigned


@app.timer(interval=3.0)
async def discover_cdc_topics() -> None:
    _subscribe(await list_topics(settings.bootstrap_servers))


@app.timer(interval=0.5)
async def flush_pending_topics() -> None:
    _flush_pending()


@app.timer(interval=5.0)
async def confirm_subscription() -> None:
    """A safety net for a flag lost in the moment between our check and the conductor's: a
    topic of the list missing from the consumer's subscription at two checks in a row (5 s
    apart, the group stable at both) is flagged again. Never more: each flag is a rebalance."""
    if app.rebalancing:
        _unconfirmed.clear()
        return
    missing = set(cdc_topics) - _subscribed()
    if missing & _unconfirmed:
        logger.info("CDC topics still not subscribed, flagging again: %s", sorted(missing))
        conductor._flag_changes()
        missing = set()
    _unconfirmed.clear()
    _unconfirmed.update(missing)


discover_at_start()
