"""A writer thread that keeps changing a source table while a test crashes workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from devstack.mariadb import PrivateMariaDB

# The statements of turn ``i`` on ``table``.
Statements = Callable[[str, int], list[str]]


def insert_update_delete(table: str, i: int) -> list[str]:
    """Insert row ``i``, bump 1/7 of the rows, delete the row inserted 50 turns ago."""
    return [
        f"INSERT INTO {table} VALUES ({i}, 0, 'new')",
        f"UPDATE {table} SET n = n + 1 WHERE id % 7 = {i % 7}",
        f"DELETE FROM {table} WHERE id = {i - 50}",
    ]


class Churn(threading.Thread):
    """Runs ``statements(table, i)`` for i = first_id, first_id + 1, … every 20 ms until stopped.
    Tables have columns (id, n, label)."""

    def __init__(
        self,
        db: PrivateMariaDB,
        table: str,
        first_id: int = 1001,
        statements: Statements = insert_update_delete,
    ) -> None:
        super().__init__(daemon=True)
        self.db, self.table, self.first_id, self.make = db, table, first_id, statements
        self.stop = threading.Event()
        self.statements = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._churn()
        except BaseException as exc:  # the test asserts there was none
            self.error = exc

    def _churn(self) -> None:
        conn = self.db.connect()
        i = self.first_id
        while not self.stop.is_set():
            with conn.cursor() as cur:
                turn = self.make(self.table, i)
                for statement in turn:
                    cur.execute(statement)
            self.statements += len(turn)
            i += 1
            time.sleep(0.02)
        conn.close()
