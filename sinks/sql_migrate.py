"""Evolve a target table toward the source's shape: what may change, what may not, and the DDL.

The target must be able to hold every value of the source column it mirrors; it never has to be
exactly the source's type. So a column the target lacks is added (nullable, so existing rows stay
valid), and a column whose values no longer fit is *widened*:

- integers: SMALLINT → INTEGER → BIGINT (int → bigint, unsigned int → bigint, …);
- integers and decimals: to a NUMERIC with enough integer digits and the larger scale
  (int → decimal(12,2), decimal(10,2) → decimal(12,4));
- FLOAT → DOUBLE;
- strings (CHAR, VARCHAR, ENUM, SET, TEXT): to the longer VARCHAR, or to the unbounded text type;
- binary strings: to the longer BINARY/VARBINARY, or to the unbounded binary type;
- DATE → timestamp.

A source column that became *narrower* changes nothing: the wider target still holds every value
(and a later widening at the source needs no work). A column dropped at the source stays in the
target and is no longer written: rows inserted afterwards leave it NULL, updated rows keep what
it held. Everything else (text → integer, integer → float, time → date, a new primary key) is
*unsafe*: :func:`plan` names each such column with the reason, and the sink refuses the change
under its ``evolve`` policy (sinks/sql.py).

Per dialect: PostgreSQL ``ALTER COLUMN … TYPE``, MySQL/MariaDB ``MODIFY COLUMN``; SQLite cannot
change a column's type and has no need to (its declared types are affinities and any value fits),
so a widening there changes nothing. Types are compared in their compiled SQL form, the same for
a reflected column and for the type the sink would create, so a table created by an older build
or by hand is judged by what it really is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateColumn

from sinks.sql_types import MYSQL_DIALECTS, sql_type
from sources.schema import Column

logger = logging.getLogger(__name__)

_TYPE = re.compile(r"^\s*([A-Z][A-Z ]*?)\s*(?:\(([^)]*)\))?(?:\s+(.*))?$")
_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "INTEGER": 32, "BIGINT": 64}
# Decimal digits an integer type needs (unsigned adds one bit, and possibly a digit).
_INT_DIGITS = {8: 3, 9: 3, 16: 5, 17: 5, 24: 8, 25: 8, 32: 10, 33: 10, 64: 19, 65: 20}
_STRINGS = {"VARCHAR", "CHAR", "CHARACTER VARYING", "CHARACTER", "NVARCHAR", "NCHAR"}
_TEXTS = {"TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT", "CLOB"}
_BYTES = {"BINARY", "VARBINARY"}
_BLOBS = {"BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BYTEA"}
_DATETIMES = {"DATETIME", "TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE"}
_TIMES = {"TIME", "TIME WITHOUT TIME ZONE", "INTERVAL"}
_MAX_PRECISION = {"mysql": 65, "mariadb": 65, "postgresql": 1000, "sqlite": 1000}


@dataclass(frozen=True)
class Shape:
    """What a SQL type can hold: a family and its size (None: unbounded)."""

    family: str  # int, decimal, float, string, bytes, date, datetime, time, json, other
    size: int | None = None  # bits (int, float), characters (string), bytes, precision
    scale: int = 0  # decimal

    @property
    def int_digits(self) -> int | None:
        if self.family == "int":
            return _INT_DIGITS.get(self.size or 64, 20)
        if self.family == "decimal":
            return None if self.size is None else self.size - self.scale
        return None


def shape_of(sql: str, dialect: str) -> Shape:
    """The shape of a compiled SQL type (``VARCHAR(100) COLLATE utf8mb4_bin``, ``INTEGER``)."""
    m = _TYPE.match(sql.upper())
    if not m:
        return Shape("other", None)
    name, args, rest = m.group(1).strip(), m.group(2), m.group(3) or ""
    nums = [int(a) for a in re.findall(r"\d+", args or "")]
    if name in _INT_BITS:
        return Shape("int", _INT_BITS[name] + (1 if "UNSIGNED" in rest else 0))
    if name in ("NUMERIC", "DECIMAL"):
        if not nums:  # PostgreSQL NUMERIC without precision holds any number
            return Shape("decimal", None) if dialect == "postgresql" else Shape("decimal", 10)
        return Shape("decimal", nums[0], nums[1] if len(nums) > 1 else 0)
    if name in ("REAL", "FLOAT4"):
        return Shape("float", 32)
    if name == "FLOAT":
        if nums:
            return Shape("float", 32 if nums[0] <= 24 else 64)
        return Shape("float", 64 if dialect == "postgresql" else 32)  # PostgreSQL FLOAT = float8
    if name in ("DOUBLE", "DOUBLE PRECISION", "FLOAT8"):
        return Shape("float", 64)
    if name in _STRINGS:
        return Shape("string", nums[0] if nums else None)
    if name in _TEXTS:
        return Shape("string", None)
    if name in _BYTES:
        return Shape("bytes", nums[0] if nums else None)
    if name in _BLOBS:
        return Shape("bytes", None)
    if name == "DATE":
        return Shape("date")
    if name in _DATETIMES:
        return Shape("datetime")
    if name in _TIMES:
        return Shape("time")
    if name in ("JSON", "JSONB"):
        return Shape("json")
    return Shape("other", None)


def compiled(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> str:
    return str(type_.compile(dialect=dialect))


@dataclass
class Plan:
    """How a target table must change to take rows of one source shape."""

    add: list[Column] = field(default_factory=list)
    widen: list[tuple[Column, str]] = field(default_factory=list)  # new type, old type (SQL)
    unsafe: list[str] = field(default_factory=list)  # a reason per column
    # The column each source column is written as: the source's own, or the target's wider one.
    write: dict[str, Column] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.add or self.widen or self.unsafe)

    def describe(self) -> str:
        parts = [f"add {c.name} {c.column_type}" for c in self.add]
        parts += [f"widen {c.name} {old} → {c.column_type}" for c, old in self.widen]
        parts += self.unsafe
        return "; ".join(parts)


def _decimal(name: str, digits: int, scale: int) -> Column:
    return Column(name, "decimal", f"decimal({digits + scale},{scale})")


def _decide(col: Column, target_sql: str, dialect: sa.Dialect) -> tuple[str, Column | str]:
    """("keep", write column) | ("widen", new column) | ("unsafe", reason)."""
    name = dialect.name
    desired_sql = compiled(sql_type(col), dialect)
    t, d = shape_of(target_sql, name), shape_of(desired_sql, name)
    if t == d:
        return "keep", col
    unsafe = f"column {col.name}: the target's {target_sql} cannot hold {col.column_type}"
    if t.family == d.family:
        if t.family in ("int", "float"):
            return ("keep", col) if (d.size or 0) <= (t.size or 0) else ("widen", col)
        if t.family in ("string", "bytes"):
            if t.size is None or (d.size is not None and d.size <= t.size):
                return "keep", col
            return "widen", col
        if t.family == "decimal":
            if t.size is None:
                return "keep", col
            digits = max(t.int_digits or 0, d.int_digits or 0)
            scale = max(t.scale, d.scale)
            if (digits + scale, scale) == (t.size, t.scale):
                return "keep", _decimal(col.name, digits, t.scale)
            if digits + scale > _MAX_PRECISION.get(name, 65):
                return "unsafe", f"{unsafe} (over {_MAX_PRECISION.get(name, 65)} digits)"
            return "widen", _decimal(col.name, digits, scale)
        return "keep", col  # date, datetime, time, json: one target type each
    if {t.family, d.family} == {"int", "decimal"}:
        if t.family == "decimal" and t.size is None:
            return "keep", Column(col.name, "decimal", "decimal")
        digits = max(t.int_digits or 0, d.int_digits or 0)
        scale = max(t.scale, d.scale)
        if t.family == "decimal" and (digits + scale, scale) == (t.size, t.scale):
            return "keep", _decimal(col.name, digits, t.scale)
        return "widen", _decimal(col.name, digits, scale)
    if (t.family, d.family) == ("datetime", "date"):
        return "keep", Column(col.name, "datetime", "datetime(6)")
    if (t.family, d.family) == ("date", "datetime"):
        return "widen", col
    if (t.family, d.family) == ("string", "json") and t.size is None:
        return "keep", Column(col.name, "longtext", "longtext")  # the JSON text as it is
    return "unsafe", unsafe


def plan(
    existing: Mapping[str, sa.types.TypeEngine[Any]],
    columns: Sequence[Column],
    dialect: sa.Dialect,
) -> Plan:
    """What a target with columns ``existing`` (reflected types) needs to take ``columns``."""
    p = Plan()
    for col in columns:
        found = existing.get(col.name)
        if found is None:
            p.add.append(col)
            p.write[col.name] = col
            continue
        target_sql = compiled(found, dialect)
        verdict, what = _decide(col, target_sql, dialect)
        if verdict == "unsafe":
            assert isinstance(what, str)
            p.unsafe.append(what)
            p.write[col.name] = col  # written as it is if the policy lets it through
            continue
        assert isinstance(what, Column)
        if verdict == "widen":
            p.widen.append((what, target_sql))
        p.write[col.name] = what
    return p


def apply_plan(engine: sa.Engine, table: sa.Table, p: Plan, primary_key: Sequence[str]) -> None:
    """Run a plan's additions and widenings (its unsafe changes are the caller's to refuse)."""
    if not p.add and not p.widen:
        return
    preparer = engine.dialect.identifier_preparer
    name = preparer.format_table(table)
    dialect = engine.dialect.name
    with engine.begin() as conn:
        for col in p.add:
            column = sa.Column(col.name, sql_type(col), nullable=True)
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {ddl}"))
        for col, old in p.widen:
            new = compiled(sql_type(col), engine.dialect)
            quoted = preparer.quote(col.name)
            if dialect == "postgresql":
                conn.execute(sa.text(f"ALTER TABLE {name} ALTER COLUMN {quoted} TYPE {new}"))
            elif dialect in MYSQL_DIALECTS:
                null = "NOT NULL" if col.name in primary_key else "NULL"
                conn.execute(sa.text(f"ALTER TABLE {name} MODIFY COLUMN {quoted} {new} {null}"))
            else:
                logger.debug("%s: %s stays %s on %s (any value fits)", name, col.name, old, dialect)
    logger.info("evolved %s: %s", table.name, p.describe())
