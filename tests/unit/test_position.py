"""Source positions: total order, the sortable key, JSON round trip, file sequence numbers."""

from __future__ import annotations

import random

import pytest

from sources.position import BinlogPosition, binlog_file_seq


def test_ordering_across_files_is_numeric_not_lexical() -> None:
    a = BinlogPosition.at("binlog.000009", 999_999)
    b = BinlogPosition.at("binlog.000010", 4)
    assert a < b
    assert b > a
    assert a.key() < b.key()
    # The sequence number is not just the last digit.
    assert BinlogPosition.at("binlog.000099", 4) < BinlogPosition.at("binlog.000100", 4)
    assert BinlogPosition.at("binlog.999999", 4) < BinlogPosition.at("binlog.1000000", 4)


def test_ordering_by_pos_then_row() -> None:
    f = "mysql-bin.000042"
    assert BinlogPosition.at(f, 100) < BinlogPosition.at(f, 101)
    assert BinlogPosition.at(f, 100, 0) < BinlogPosition.at(f, 100, 1)
    assert BinlogPosition.at(f, 100, 999) < BinlogPosition.at(f, 101, 0)
    assert BinlogPosition.at(f, 100, 2) == BinlogPosition.at(f, 100, 2)
    assert sorted(
        [
            BinlogPosition.at(f, 200, 1),
            BinlogPosition.at("mysql-bin.000041", 9_000),
            BinlogPosition.at(f, 200, 0),
            BinlogPosition.at(f, 150, 7),
        ]
    ) == [
        BinlogPosition.at("mysql-bin.000041", 9_000),
        BinlogPosition.at(f, 150, 7),
        BinlogPosition.at(f, 200, 0),
        BinlogPosition.at(f, 200, 1),
    ]


def test_at_parses_the_file_name() -> None:
    p = BinlogPosition.at("mysql-bin.000042", 1234, 5)
    assert p == BinlogPosition(42, 1234, 5, "mysql-bin.000042")
    assert p.file_seq == 42
    assert p.pos == 1234
    assert p.row == 5
    assert p.file == "mysql-bin.000042"
    assert BinlogPosition.at("binlog.000001", 4).row == 0


def test_key_is_fixed_width_digits() -> None:
    k = BinlogPosition.at("binlog.000001", 4).key()
    assert k == "00000001" + "000000000004" + "000000000"
    assert len(k) == 29
    assert k.isdigit()
    assert BinlogPosition(12_345_678, 123_456_789_012, 123_456_789).key() == (
        "12345678123456789012123456789"
    )


def _random_position(rng: random.Random) -> BinlogPosition:
    seq = rng.choice([1, 2, 9, 10, 11, 99, 100, rng.randrange(1, 10**8)])
    pos = rng.choice([4, 5, 255, 256, rng.randrange(4, 2**32), rng.randrange(4, 10**12)])
    row = rng.choice([0, 0, 1, 9, 10, rng.randrange(0, 10**9)])
    return BinlogPosition.at(f"binlog.{seq:06d}", pos, row)


def test_key_sorts_as_the_positions_do() -> None:
    rng = random.Random(0)
    positions = [_random_position(rng) for _ in range(2000)]
    keys = [p.key() for p in positions]
    assert {len(k) for k in keys} == {29}
    by_position = sorted(positions)
    by_key = sorted(positions, key=BinlogPosition.key)
    assert [p.key() for p in by_position] == [p.key() for p in by_key]
    for _ in range(5000):
        a, b = rng.sample(positions, 2)
        assert (a < b) == (a.key() < b.key()), (a, b)
        assert (a == b) == (a.key() == b.key()), (a, b)


def test_json_round_trip() -> None:
    rng = random.Random(1)
    for _ in range(200):
        p = _random_position(rng)
        d = p.to_json()
        assert d == {"file": p.file, "pos": p.pos, "row": p.row}
        assert BinlogPosition.from_json(d) == p
    # row is optional and string numbers are accepted.
    assert BinlogPosition.from_json({"file": "binlog.000003", "pos": "77"}) == BinlogPosition.at(
        "binlog.000003", 77, 0
    )


def test_str() -> None:
    assert str(BinlogPosition.at("binlog.000003", 77)) == "binlog.000003:77"
    assert str(BinlogPosition.at("binlog.000003", 77, 2)) == "binlog.000003:77#2"


def test_positions_are_hashable_and_frozen() -> None:
    p = BinlogPosition.at("binlog.000003", 77)
    assert {p, BinlogPosition.at("binlog.000003", 77)} == {p}
    with pytest.raises(AttributeError):
        p.pos = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "seq"),
    [
        ("mysql-bin.000042", 42),
        ("binlog.000001", 1),
        ("binlog.1000000", 1_000_000),
        ("/var/lib/mysql/host-bin.000123", 123),
        ("a.b.c.000007", 7),
    ],
)
def test_binlog_file_seq(name: str, seq: int) -> None:
    assert binlog_file_seq(name) == seq


@pytest.mark.parametrize(
    "name", ["", "binlog", "binlog.", "binlog.index", "binlog.00001a", "binlog.000001.gz"]
)
def test_binlog_file_seq_rejects_other_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a binlog file name"):
        binlog_file_seq(name)
    with pytest.raises(ValueError):
        BinlogPosition.at(name, 4)
