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
# One name, dropped after each use: the statements' text stays the same from batch to batch, so
# SQLAlchemy's compiled cache and the driver's prepared statements are reused, not filled.
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
    upsert_from: Callable[[sa.Select[Any]], sa.Executable],
) -> None:
    """Stage ``rows`` with COPY, then run ``upsert_from(select of the staged rows)``."""
    names = list(rows[0].keys())
    dialect = conn.dialect
    processors: list[Processor] = [
        table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
    ]
    prep = dialect.identifier_preparer
    stage = STAGE
    columns = ", ".join(prep.quote(n) for n in names)
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {prep.quote(stage)} (LIKE {prep.format_table(table)}) "
        "ON COMMIT DROP"
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f"COPY {prep.quote(stage)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [
                        v if p is None or v is None else p(v)
                        for v, p in zip(row.values(), processors, strict=True)
                    ]
                )
    finally:
        cursor.close()
    staged = sa.table(stage, *(sa.column(n) for n in names))
    conn.execute(upsert_from(sa.select(*(staged.c[n] for n in names))))
    # Several tables (or shapes) may be staged in one transaction: free the name now.
    conn.exec_driver_sql(f"DROP TABLE {prep.quote(stage)}")
