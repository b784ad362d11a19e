"""The reader → event loop channel: order kept, bounded, wakes a waiting loop, never loses."""

from __future__ import annotations

import asyncio
import threading
import time

from sources.handoff import Handoff


def test_items_cross_in_order_and_a_waiting_loop_wakes() -> None:
    async def main() -> list[object]:
        handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), capacity=10)

        def produce() -> None:
            for i in range(1000):
                handoff.put(i)
                if i % 100 == 0:
                    time.sleep(0.01)  # let the loop catch up and wait
            handoff.put(ValueError("end"))

        t = threading.Thread(target=produce)
        t.start()
        got: list[object] = []
        started = time.monotonic()
        while not (got and isinstance(got[-1], ValueError)):
            got.extend(await handoff.get_all(timeout=5))
            assert time.monotonic() - started < 10, "a wakeup was lost"
        t.join()
        return got

    got = asyncio.run(main())
    assert got[:-1] == list(range(1000))


def test_a_full_channel_holds_the_producer_until_closed() -> None:
    async def main() -> None:
        handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), capacity=2)
        done = threading.Event()

        def produce() -> None:
            for i in range(3):
                handoff.put(i)
            done.set()

        t = threading.Thread(target=produce)
        t.start()
        await asyncio.sleep(0.3)
        assert not done.is_set()  # the third item waits for room
        assert await handoff.get_all(timeout=1) == [0, 1]
        await asyncio.sleep(0.3)
        assert done.is_set()
        assert await handoff.get_all(timeout=1) == [2]
        handoff.put(3)
        handoff.put(4)
        handoff.close()
        t2 = threading.Thread(target=handoff.put, args=(5,))
        t2.start()
        t2.join(timeout=2)
        assert not t2.is_alive()  # closed: a blocked producer gives up

    asyncio.run(main())
