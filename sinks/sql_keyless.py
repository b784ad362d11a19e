"""Mirror a source table without a primary key: the target holds the same multiset of rows.

Such a table's change events are keyed by the whole row (docs/CHANGE_EVENTS.md "Keys"): identical
rows share a key, an update arrives as a ``d`` of the old row and a ``c`` of the new one. The
target table (mode upsert) has every source column plus

- ``_sluice_key``: SHA-256 of the row key (the row's values as JSON), the same for identical rows;
- ``_sluice_copy``: 1..n, the copies of that row; (``_sluice_key``, ``_sluice_copy``) is the
  primary key, and a key's copies are always numbered 1..n without gaps;
- ``_sluice_pos``: the version of the change that wrote the copy.

Deleting one of n identical rows removes copy n; inserting one adds copy n+1. Which copy goes
does not matter: copies are identical in every source column.

**Version.** Per row key the sink keeps the version of the last change applied to it in
``_sluice_tombstones`` (table, SHA-256 of the key, key, version), written in the same transaction
as the rows, whether copies remain or not. A version is the change's position followed by its
*copy number* at that position (``<pos>.<nnnnnn>``): binlog changes each have their own position
(number 0), snapshot rows all carry the snapshot's position and identical ones are numbered in
their message. A change is applied only if its version is newer than the key's stored version
(and than the table's truncate floor).

**Proof of idempotence and order.** All changes of one row key go to one partition (the key is
the message key), so they reach the sink in source order, and the sink applies a key's changes in
version order. A redelivered change has the version it had; every change up to the stored version
has been applied (the stored version only grows, in the transaction that applied them), so a
change not newer than it is a duplicate and skipping it changes nothing. A newer change was not
applied yet and is applied once, moving the stored version past it. The copy count after a
sequence of applied changes is therefore the source's count of that row, whatever the replays.

**Snapshots.** A snapshot row (op ``r``) states that the row exists at the snapshot's position:
the first ``r`` of a key at a newer position resets its count to 0 and the snapshot's copies
count from there, so a snapshot taken again (a table without a key is read again from its
start) does not double the rows.

**Limits.** (1) Identical rows that one snapshot puts into two different messages get the same
copy numbers in each, so the copies of the second message are taken for replays: the target
then holds fewer copies of that row until it changes again. (2) The row key covers the columns of
the schema at the time of the change; after a column is added at the source, the rows written
before it have a different key than the same rows' later changes, which then find no copy to
delete or update. Give such a table a primary key, or re-snapshot it into an empty target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sinks.sql import SqlTarget, _Target

# A (target, row key, version, event) per change, in message order.
Change = tuple["_Target", str, str, dict[str, Any]]


def apply(sink: SqlTarget, conn: sa.Connection, changes: Sequence[Change]) -> int:
    """Apply a keyless table's changes inside the sink's transaction; how many were newer."""
    from sinks.sql import COPY_COLUMN, KEY_COLUMN, POS_COLUMN, TABLE_KEY, _decode_row, _key_hash

    if not changes:
        return 0
    table = changes[-1][0].table  # any shape: the name and the hidden columns are the same
    by_key: dict[str, list[Change]] = {}
    for change in changes:
        by_key.setdefault(change[1], []).append(change)
    stored = sink._tombstones(conn, table.name, [TABLE_KEY, *by_key])
    floor = stored.pop(TABLE_KEY, "")
    hashes = {rk: _key_hash(rk) for rk in by_key}
    counts = _counts(conn, table, list(hashes.values()))
    applied = 0
    versions = []
    deletes: list[dict[str, Any]] = []  # copies above "keep" of a key go
    inserts: dict[int, tuple[sa.Table, list[dict[str, Any]]]] = {}  # per table shape
    for rk, items in by_key.items():
        h = hashes[rk]
        version = max(stored.get(rk, ""), floor)
        before = n = counts.get(h, 0)
        insert: tuple[_Target, dict[str, Any]] | None = None
        for tgt, _, v, ev in sorted(items, key=lambda c: c[2]):
            if v <= version:
                continue  # applied before: a replay
            if ev["op"] == "r" and v.split(".")[0] > version.split(".")[0]:
                n = 0  # a snapshot states the row's count at its position
            version = v
            applied += 1
            if ev["op"] in ("c", "r"):
                n += 1
                insert = (tgt, ev)
            elif ev["op"] == "d":
                n = max(n - 1, 0)
            # "u" keeps the row's values (it keeps its key), so its copies stay as they are
        if version == max(stored.get(rk, ""), floor):
            continue
        versions.append(
            {"table_name": table.name, "key_hash": h, "row_key": rk, POS_COLUMN: version}
        )
        low = min(before, n)
        if before > low:
            deletes.append({"h": h, "keep": low})
        if n > low and insert is not None:
            tgt, ev = insert
            row = _decode_row(tgt, ev["after"], version)
            rows = inserts.setdefault(id(tgt.table), (tgt.table, []))[1]
            rows.extend({**row, KEY_COLUMN: h, COPY_COLUMN: c} for c in range(low + 1, n + 1))
    if deletes:
        stmt = table.delete().where(
            table.c[KEY_COLUMN] == sa.bindparam("h"), table.c[COPY_COLUMN] > sa.bindparam("keep")
        )
        conn.execute(stmt, deletes)
    for shape, rows in inserts.values():
        for i in range(0, len(rows), 1000):
            conn.execute(shape.insert(), rows[i : i + 1000])
    if versions:
        conn.execute(sink._versioned_upsert(sink.tombstones, ["row_key"], POS_COLUMN), versions)
    return applied


def _counts(conn: sa.Connection, table: sa.Table, hashes: list[str]) -> dict[str, int]:
    from sinks.sql import COPY_COLUMN, KEY_COLUMN

    found: dict[str, int] = {}
    for i in range(0, len(hashes), 500):
        rows = conn.execute(
            sa.select(table.c[KEY_COLUMN], sa.func.max(table.c[COPY_COLUMN]))
            .where(table.c[KEY_COLUMN].in_(hashes[i : i + 500]))
            .group_by(table.c[KEY_COLUMN])
        )
        found.update({r[0]: int(r[1]) for r in rows})
    return found
