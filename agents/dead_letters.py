"""The dead-letter topic: records that can never be applied, with the reason and their origin.

Sent with a plain idempotent producer and awaited until the broker acknowledged them: a dead
letter must never depend on a Faust transaction (whose sends to topics the app does not consume
go outside any transaction, PITFALLS.md §1.1) or sit in a buffer when the worker dies.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import mode
from aiokafka import AIOKafkaProducer

from app.main import app, settings
from app.records import encode
from app.topics import dead_letter_topic

logger = logging.getLogger(__name__)

_producer: AIOKafkaProducer | None = None


async def plain_producer() -> AIOKafkaProducer:
    """The worker's idempotent producer for records outside any Faust transaction."""
    global _producer
    if _producer is None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
        )
        await producer.start()
        _producer = producer
    return _producer


async def send_dead_letter(message: Any, reason: str) -> None:
    """Publish ``message`` (a Faust message) with ``reason``; returns once it is durable."""
    logger.error(
        "dead letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
    )
    envelope = {
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key.decode("utf-8", "replace") if message.key else None,
        "value": message.value.decode("utf-8", "replace") if message.value else None,
        "at": time.time(),
    }
    producer = await plain_producer()
    await producer.send_and_wait(
        dead_letter_topic(settings.app_id), encode(envelope), key=message.key, partition=0
    )


@app.service
class DeadLetterProducer(mode.Service):
    """Closes the plain producer when the worker stops."""

    async def on_stop(self) -> None:
        global _producer
        if _producer is not None:
            await _producer.stop()
            _producer = None
