"""The bound on what the binlog reader thread hands a streaming job ahead of it."""

from __future__ import annotations

import threading

from sources.handoff import ItemBudget


def _acquire_in_thread(budget: ItemBudget, n: int) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        budget.acquire(n)
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done


def test_the_reader_waits_until_the_job_took_enough() -> None:
    budget = ItemBudget(100)
    budget.acquire(60)
    t, done = _acquire_in_thread(budget, 60)
    assert not done.wait(0.2), "120 items would exceed the budget of 100"
    budget.release(60)
    assert done.wait(2)
    t.join(2)


def test_one_part_larger_than_the_budget_passes_when_nothing_is_queued() -> None:
    budget = ItemBudget(100)
    t, done = _acquire_in_thread(budget, 500)
    assert done.wait(2)
    t.join(2)


def test_closing_releases_a_waiting_reader() -> None:
    budget = ItemBudget(10)
    budget.acquire(10)
    t, done = _acquire_in_thread(budget, 5)
    assert not done.wait(0.2)
    budget.close()
    assert done.wait(2)
    t.join(2)
