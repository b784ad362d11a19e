"""Which tables a DDL statement from the binlog touches, and how.

Not a SQL parser: the new shape of a table comes from the binlog's table maps (and the schema
history), so a statement only has to say *which* tables it changes and in which way: created,
altered (with the columns it renames), renamed, truncated or dropped. Comments are removed and
MySQL's executable comments (``/*!50100 … */``, ``/*M!100100 … */``) are read as code. A
statement this module does not recognise touches no table (DML, GRANT, CREATE USER, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["create", "alter", "rename", "truncate", "drop"]


@dataclass(frozen=True)
class TableChange:
    kind: Kind
    database: str
    table: str
    # rename: the table's new name
    new_database: str | None = None
    new_table: str | None = None
    # alter: columns renamed by RENAME COLUMN or CHANGE, old name → new name
    renamed_columns: dict[str, str] = field(default_factory=dict)


_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<comment>/\*(?!M?!).*?\*/|--[ \t][^\n]*|\#[^\n]*)
    | (?P<exec_open>/\*M?!\d*)
    | (?P<exec_close>\*/)
    | (?P<quoted>`(?:[^`]|``)*`)
    | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<word>[A-Za-z0-9_$\u0080-\uffff]+)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Tok:
    text: str
    ident: bool  # a word or a quoted identifier (may name something)
    quoted: bool = False

    @property
    def upper(self) -> str:
        return "" if self.quoted else self.text.upper()


def tokens(sql: str) -> list[_Tok]:
    out: list[_Tok] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        text = m.group()
        if kind in ("ws", "comment", "exec_open", "exec_close"):
            continue
        if kind == "quoted":
            out.append(_Tok(text[1:-1].replace("``", "`"), True, True))
        elif kind == "word":
            out.append(_Tok(text, True))
        else:
            out.append(_Tok(text, False))
    return out


class _Reader:
    def __init__(self, toks: list[_Tok], default_db: str | None) -> None:
        self.toks = toks
        self.i = 0
        self.default_db = default_db

    def peek(self, ahead: int = 0) -> _Tok | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def accept(self, *words: str) -> bool:
        """Consume the words if they come next (case-insensitive, unquoted)."""
        for n, w in enumerate(words):
            t = self.peek(n)
            if t is None or t.upper != w:
                return False
        self.i += len(words)
        return True

    def name(self) -> tuple[str, str] | None:
        """A table name, ``db.table`` or ``table`` (in the statement's default database)."""
        t = self.peek()
        if t is None or not t.ident:
            return None
        self.i += 1
        nxt = self.peek()
        if nxt is not None and nxt.text == "." and not nxt.ident:
            second = self.peek(1)
            if second is not None and second.ident:
                self.i += 2
                return t.text, second.text
        if self.default_db is None:
            return None
        return self.default_db, t.text

    def ident(self) -> str | None:
        t = self.peek()
        if t is None or not t.ident:
            return None
        self.i += 1
        return t.text

    def clauses(self) -> list[list[_Tok]]:
        """The rest of the statement split at top-level commas."""
        out: list[list[_Tok]] = [[]]
        depth = 0
        for t in self.toks[self.i :]:
            if not t.ident and t.text == "(":
                depth += 1
            elif not t.ident and t.text == ")":
                depth -= 1
            elif not t.ident and t.text == "," and depth == 0:
                out.append([])
                continue
            out[-1].append(t)
        self.i = len(self.toks)
        return [c for c in out if c]


def parse_ddl(sql: str, default_db: str | None) -> list[TableChange]:
    """The tables ``sql`` changes; ``default_db`` is the session database it ran in."""
    r = _Reader(tokens(sql), default_db)
    if r.accept("CREATE"):
        return _create(r)
    if r.accept("ALTER"):
        return _alter(r)
    if r.accept("DROP"):
        return _drop(r)
    if r.accept("RENAME"):
        return _rename(r) if r.accept("TABLE") or r.accept("TABLES") else []
    if r.accept("TRUNCATE"):
        r.accept("TABLE")
        name = r.name()
        return [TableChange("truncate", *name)] if name else []
    return []


def _create(r: _Reader) -> list[TableChange]:
    r.accept("OR", "REPLACE")
    if r.accept("TEMPORARY"):
        return []  # session-local; never written to a ROW binlog as rows of a real table
    if r.accept("UNIQUE") or r.accept("FULLTEXT") or r.accept("SPATIAL") or r.accept("INDEX"):
        return _index(r)
    if not r.accept("TABLE"):
        return []
    r.accept("IF", "NOT", "EXISTS")
    name = r.name()
    return [TableChange("create", *name)] if name else []


def _index(r: _Reader) -> list[TableChange]:
    """CREATE/DROP INDEX … ON table: no column changes, but the primary key may."""
    for n in range(len(r.toks) - r.i):
        t = r.peek(n)
        if t is not None and t.upper == "ON":
            r.i += n + 1
            name = r.name()
            return [TableChange("alter", *name)] if name else []
    return []


def _alter(r: _Reader) -> list[TableChange]:
    r.accept("ONLINE")
    r.accept("IGNORE")
    if not r.accept("TABLE"):
        return []
    r.accept("IF", "EXISTS")
    name = r.name()
    if name is None:
        return []
    renamed: dict[str, str] = {}
    new_name: tuple[str, str] | None = None
    for clause in r.clauses():
        c = _Reader(clause, name[0])
        if c.accept("RENAME", "COLUMN"):
            c.accept("IF", "EXISTS")
            old, _, new = c.ident(), c.accept("TO"), c.ident()
            if old and new:
                renamed[old] = new
        elif c.accept("RENAME", "INDEX") or c.accept("RENAME", "KEY"):
            continue
        elif c.accept("RENAME"):
            _ = c.accept("TO") or c.accept("AS")
            new_name = c.name()
        elif c.accept("CHANGE"):
            c.accept("COLUMN")
            c.accept("IF", "EXISTS")
            old, new = c.ident(), c.ident()
            if old and new and old != new:
                renamed[old] = new
    out = [TableChange("alter", *name, renamed_columns=renamed)]
    if new_name is not None and new_name != name:
        out.append(TableChange("rename", *name, *new_name))
    return out


def _drop(r: _Reader) -> list[TableChange]:
    if r.accept("TEMPORARY"):
        return []
    if r.accept("INDEX"):
        return _index(r)
    if not r.accept("TABLE") and not r.accept("TABLES"):
        return []
    r.accept("IF", "EXISTS")
    out: list[TableChange] = []
    while (name := r.name()) is not None:
        out.append(TableChange("drop", *name))
        if not r.accept(","):
            break
    return out


def _rename(r: _Reader) -> list[TableChange]:
    r.accept("IF", "EXISTS")
    out: list[TableChange] = []
    while (old := r.name()) is not None:
        if not r.accept("TO"):
            break
        new = r.name()
        if new is None:
            break
        out.append(TableChange("rename", *old, *new))
        if not r.accept(","):
            break
    return out


def dropped_database(sql: str) -> str | None:
    """The database a ``DROP DATABASE``/``DROP SCHEMA`` statement drops, else None."""
    r = _Reader(tokens(sql), None)
    if r.accept("DROP") and (r.accept("DATABASE") or r.accept("SCHEMA")):
        r.accept("IF", "EXISTS")
        return r.ident()
    return None
