"""Re-snapshot requests: checked against the pipeline, round-tripped through the control topic."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.pipeline import parse_pipeline
from sources.resnapshot import ResnapshotRequest

PIPELINE = parse_pipeline(
    """
sources:
  - name: shop
    url: mysql://root@127.0.0.1:3306
    server_id: 4001
    tables:
      include: ["shop.*"]
      exclude: ["shop.tmp_*"]
sinks: []
"""
)


def test_round_trip_with_scalar_bounds() -> None:
    req = ResnapshotRequest.from_json(
        {"source": "shop", "table": "shop.orders", "from": 10, "to": [20]}, PIPELINE
    )
    assert (req.database, req.table, req.key_from, req.key_to) == ("shop", "orders", [10], [20])
    assert ResnapshotRequest.from_bytes(req.to_bytes(), PIPELINE) == req


def test_whole_table() -> None:
    req = ResnapshotRequest.from_json({"source": "shop", "table": "shop.orders"}, PIPELINE)
    assert req.key_from is None and req.key_to is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"source": "other", "table": "shop.orders"}, "unknown source"),
        ({"source": "shop", "table": "shop.tmp_x"}, "not captured"),
        ({"source": "shop", "table": "orders"}, '"table"'),
        ([1, 2], "JSON object"),
    ],
)
def test_refused_with_a_reason(body: object, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        ResnapshotRequest.from_json(body, PIPELINE)


def test_other_commands_are_not_taken_for_a_resnapshot() -> None:
    with pytest.raises(ConfigError, match="not a resnapshot command"):
        ResnapshotRequest.from_bytes(b'{"command": "pause"}', PIPELINE)
