"""Wire format of the InitProducerId v3 request/response registered by app.kafka_compat.

Expected bytes are written out by hand from the Kafka protocol spec
(InitProducerId v3 is a flexible version: compact nullable string, tagged fields,
request header v2 / response header v1).
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import pytest
from aiokafka.protocol.transaction import InitProducerIdRequest, InitProducerIdRequest_v0

from app.kafka_compat import (
    InitProducerIdRequest_v3,
    InitProducerIdResponse_v3,
    disable_tansu_compat,
    enable_tansu_compat,
    is_tansu_compat_enabled,
)


@pytest.fixture
def restore_compat() -> Iterator[None]:
    was_enabled = is_tansu_compat_enabled()
    yield
    if was_enabled:
        enable_tansu_compat()
    else:
        disable_tansu_compat()


def test_request_v3_exact_bytes() -> None:
    request = InitProducerIdRequest_v3("sluice-tx-0", 60000)
    expected = (
        b"\x0c"  # compact string length + 1 = 12
        b"sluice-tx-0"
        b"\x00\x00\xea\x60"  # transaction_timeout_ms = 60000 (int32)
        b"\xff\xff\xff\xff\xff\xff\xff\xff"  # producer_id = -1 (int64)
        b"\xff\xff"  # producer_epoch = -1 (int16)
        b"\x00"  # no tagged fields
    )
    assert request.encode() == expected
    assert request.FLEXIBLE_VERSION is True
    assert (request.API_KEY, request.API_VERSION) == (22, 3)


def test_request_v3_null_transactional_id() -> None:
    # Idempotent (non-transactional) producers send a null transactional id.
    request = InitProducerIdRequest_v3(None, 1000)
    expected = (
        b"\x00"  # compact nullable string: null
        b"\x00\x00\x03\xe8"  # 1000
        b"\xff\xff\xff\xff\xff\xff\xff\xff"
        b"\xff\xff"
        b"\x00"
    )
    assert request.encode() == expected


def test_request_v3_round_trips() -> None:
    request = InitProducerIdRequest_v3("tx", 5000, producer_id=42, producer_epoch=3)
    decoded = InitProducerIdRequest_v3.decode(request.encode())
    assert decoded == request
    assert (decoded.producer_id, decoded.producer_epoch, decoded.tags) == (42, 3, {})


def test_request_v3_uses_flexible_header_v2() -> None:
    request = InitProducerIdRequest_v3("sluice-tx-0", 60000)
    header = request.build_request_header(correlation_id=7, client_id="sluice")
    expected = (
        b"\x00\x16"  # api_key 22
        b"\x00\x03"  # api_version 3
        b"\x00\x00\x00\x07"  # correlation id
        b"\x00\x06sluice"  # client_id: a classic int16-length string even in header v2
        b"\x00"  # header tagged fields
    )
    assert header.encode() == expected


def test_response_v3_decodes_hand_built_bytes() -> None:
    frame = (
        b"\x00\x00\x00\x07"  # response header v1: correlation id 7
        b"\x00"  # header tagged fields
        b"\x00\x00\x00\x0a"  # throttle_time_ms = 10
        b"\x00\x00"  # error_code = 0
        b"\x00\x00\x00\x00\x00\x00\x04\xd2"  # producer_id = 1234
        b"\x00\x05"  # producer_epoch = 5
        b"\x01"  # one tagged field ...
        b"\x00\x02\xab\xcd"  # ... tag 0, 2 bytes (unknown tags must be tolerated)
    )
    buf = BytesIO(frame)
    request = InitProducerIdRequest_v3("sluice-tx-0", 60000)
    header = request.parse_response_header(buf)
    assert header.correlation_id == 7
    response = request.RESPONSE_TYPE.decode(buf)
    assert isinstance(response, InitProducerIdResponse_v3)
    assert response.throttle_time_ms == 10
    assert response.error_code == 0
    assert response.producer_id == 1234
    assert response.producer_epoch == 5
    assert response.tags == {0: b"\xab\xcd"}
    assert buf.read() == b""


def test_response_v3_error_code() -> None:
    body = b"\x00\x00\x00\x00" + b"\xff\xff" + b"\xff" * 8 + b"\xff\xff" + b"\x00"
    response = InitProducerIdResponse_v3.decode(body)
    assert (response.error_code, response.producer_id, response.producer_epoch) == (-1, -1, -1)


@pytest.mark.usefixtures("restore_compat")
def test_enable_selects_v3_only_when_broker_supports_it() -> None:
    disable_tansu_compat()
    assert not is_tansu_compat_enabled()
    plain = InitProducerIdRequest("tx", 1000).prepare({22: (0, 5)})
    assert type(plain) is InitProducerIdRequest_v0

    enable_tansu_compat()
    enable_tansu_compat()  # idempotent
    assert is_tansu_compat_enabled()
    registered = InitProducerIdRequest._CLASSES
    assert registered == (InitProducerIdRequest_v0, InitProducerIdRequest_v3)

    # Tansu advertises 0..5, Kafka >= 2.5 at least 0..3: v3 is negotiated.
    negotiated = InitProducerIdRequest("tx", 1000).prepare({22: (0, 5)})
    assert isinstance(negotiated, InitProducerIdRequest_v3)
    assert negotiated.encode() == InitProducerIdRequest_v3("tx", 1000).encode()
    # Older brokers (max v2) keep getting v0.
    old = InitProducerIdRequest("tx", 1000).prepare({22: (0, 2)})
    assert type(old) is InitProducerIdRequest_v0
