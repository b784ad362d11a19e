"""Source jobs bound to partitions of the control topic.

Each source job is bound to one partition (slot) of the control topic. Kafka's group protocol gives
every partition to exactly one worker, so the worker that owns slot p runs the jobs of slot p.
When a worker dies its slots move to the living, and their jobs resume from committed progress;
for the moment two workers overlap during a rebalance, the job's transactional id fences the older.
The control topic also carries commands for jobs, in the job's slot, so the worker running the
job gets them: re-snapshot a table or a key range (sources/resnapshot.py, asked through
app/views.py). A command for a job that is not running here (moving in a rebalance) is logged and
dropped; the status view shows whether it was served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mode
from faust import StreamT

from agents.dead_letters import plain_producer
from agents.discovery import topic_created
from agents.topics import control
from app.errors import ConfigError
from app.main import app, pipeline, settings
from app.status import STATUS
from app.topics import COMPACTED, TopicSpec, control_topic, ensure_topics, positions_topic
from sources.job import SourceJob
from sources.resnapshot import ResnapshotRequest

logger = logging.getLogger(__name__)

_running: dict[str, asyncio.Task[None]] = {}
_jobs: dict[str, SourceJob] = {}


def slot_of(job: str) -> int:
    """Jobs take slots in pipeline order, so N jobs spread over up to N workers."""
    names = [s.name for s in pipeline.sources]
    return names.index(job) % settings.control_partitions


@app.agent(control)
async def job_commands(stream: StreamT[bytes]) -> None:
    async for key, value in stream.items():
        try:
            request = ResnapshotRequest.from_bytes(value, pipeline)
        except (ConfigError, ValueError) as exc:
            logger.error("job command %r refused: %s", key, exc)
            continue
        job = _jobs.get(request.source)
        if job is None:
            logger.warning("job command for %s, which does not run here: dropped", request.source)
            continue
        logger.info("source job %s: re-snapshot of %s asked", request.source, request.name)
        job.request_resnapshot(request)


async def send_command(request: ResnapshotRequest) -> None:
    """To the job's slot of the control topic; returns once the broker has it."""
    producer = await plain_producer()
    await producer.send_and_wait(
        control_topic(settings.app_id),
        request.to_bytes(),
        key=request.source.encode(),
        partition=slot_of(request.source),
    )


async def _ensure_topics() -> None:
    await ensure_topics(
        settings.bootstrap_servers, [TopicSpec(positions_topic(settings.app_id), 1, COMPACTED)]
    )


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    slots = {tp.partition for tp in assigned if tp.topic == control.get_topic_name()}
    wanted = {s.name for s in pipeline.sources if settings.run_sources and slot_of(s.name) in slots}
    for name in list(_running):
        if name not in wanted:
            logger.info("source job %s moves to another worker; stopping it here", name)
            _running.pop(name).cancel()
            _jobs.pop(name, None)
            STATUS.jobs.pop(name, None)
    missing = [s for s in pipeline.sources if s.name in wanted and s.name not in _running]
    if missing:
        await _ensure_topics()
    for source in missing:
        job = _jobs[source.name] = SourceJob(source, settings)
        job.on_topic_created = topic_created
        STATUS.jobs[source.name] = job.status
        _running[source.name] = asyncio.ensure_future(job.run())
        logger.info("source job %s starts here (slot %d)", source.name, slot_of(source.name))


async def stop_all_jobs() -> None:
    tasks = list(_running.values())
    _running.clear()
    _jobs.clear()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@app.service
class JobRunner(mode.Service):
    """Stops this worker's source jobs when the worker stops."""

    async def on_stop(self) -> None:
        await stop_all_jobs()
