"""Many rows into a PostgreSQL table at once: COPY into a staging table, then one upsert.

A multi-row ``INSERT … VALUES`` costs SQLAlchemy and the driver tens of microseconds per row
(every value a bind parameter); ``COPY … FROM STDIN`` streams the rows in the driver's C
adaptation. The rows land in a temporary table dropped at commit, and one ``INSERT … SELECT …
ON CONFLICT DO UPDATE … WHERE`` moves them, with the same versioned condition as the row-by-row
path (sinks/sql.py), inside the sink's transaction: nothing is visible before the progress row
is written beside it.

Values go through the column types' own bind processors (JSON serialised, U+0000 replaced), so
what COPY writes is what the ``INSERT`` path would have bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

# Below this many rows the multi-row INSERT is as fast and needs no staging table.
MIN_ROWS = 64
# One name, dropped after each use (a name per batch filled SQLAlchemy's compiled cache: the
# worker's memory grew 16% over the bench's 10-minute soak).
STAGE = "_sluice_stage"

Processor = Callable[[Any], Any] | None


def usable(dialect: sa.Dialect, rows: Sequence[dict[str, Any]]) -> bool:
    """COPY applies: a PostgreSQL target, enough rows, all of the same columns."""
    if dialect.name != "postgresql" or len(rows) < MIN_ROWS:
        return False
    first = rows[0].keys()
    return all(r.keys() == first for r in rows)


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    upsert_from: Callable[[sa.Select[Any]], sa.ClauseElement],
) -> None:
    """Stage ``rows`` with COPY, then run ``upsert_from(select of the staged rows)``."""
    names = list(rows[0].keys())
    dialect = conn.dialect
    processors: list[Processor] = [
        table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
    ]
    prep = dialect.identifier_preparer
    stage = prep.quote(STAGE)
    columns = ", ".join(prep.quote(n) for n in names)
    staged = sa.table(STAGE, *(sa.column(n) for n in names))
    move = upsert_from(sa.select(*(staged.c[n] for n in names))).compile(dialect=dialect)
    # On the driver's cursor, in the sink's transaction (nothing here is prepared: sinks/sql.py).
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {stage} (LIKE {prep.format_table(table)}) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [
                        v if p is None or v is None else p(v)
                        for v, p in zip(row.values(), processors, strict=True)
                    ]
                )
        cursor.execute(str(move))
        # Several tables (or shapes) may be staged in one transaction: free the name now.
        cursor.execute(f"DROP TABLE {stage}")
    finally:
        cursor.close()
