"""The worker's Doorbell: one ring wakes one sleeping loop, and no ring is ever lost."""

from __future__ import annotations

import asyncio

from engine.worker.process import Doorbell
from tests.waiting import wait_until


async def _sleepers(bell: Doorbell, n: int) -> tuple[list[asyncio.Task[None]], list[int]]:
    woken: list[int] = []

    async def sleep(i: int) -> None:
        await bell.wait(None)
        woken.append(i)

    tasks = [asyncio.create_task(sleep(i)) for i in range(n)]
    await asyncio.sleep(0)  # every task is now waiting on the bell
    return tasks, woken


async def test_one_ring_wakes_exactly_one_sleeper_in_order() -> None:
    bell = Doorbell()
    tasks, woken = await _sleepers(bell, 3)
    bell.ring()
    await wait_until(lambda: woken == [0], what="the first sleeper to wake")
    for _ in range(20):  # many turns of the loop: a woken task would have run by now
        await asyncio.sleep(0)
    assert woken == [0]
    bell.ring()
    bell.ring()
    await wait_until(lambda: sorted(woken) == [0, 1, 2], what="the other two to wake")
    await asyncio.gather(*tasks)


async def test_a_ring_with_nobody_asleep_is_kept_for_the_next_sleeper() -> None:
    bell = Doorbell()
    bell.ring()
    await asyncio.wait_for(bell.wait(None), 1)  # returns at once: the ring was kept
    # Kept once, not forever: the next wait sleeps until its timeout.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bell.wait(0.05)
    assert loop.time() - started >= 0.04


async def test_ring_all_wakes_every_sleeper_and_the_next() -> None:
    bell = Doorbell()
    tasks, woken = await _sleepers(bell, 4)
    bell.ring_all()
    await wait_until(lambda: sorted(woken) == [0, 1, 2, 3], what="every sleeper to wake")
    await asyncio.gather(*tasks)
    await asyncio.wait_for(bell.wait(None), 1)


async def test_a_sleeper_that_timed_out_does_not_swallow_a_ring() -> None:
    bell = Doorbell()
    await bell.wait(0.01)  # times out, and must leave nothing behind
    tasks, woken = await _sleepers(bell, 1)
    bell.ring()
    await wait_until(lambda: woken == [0], what="the live sleeper to get the ring")
    await asyncio.gather(*tasks)
