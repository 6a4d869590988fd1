"""The workers' wake-up: pokes become NOTIFYs with an empty payload, coalesced, after commit."""

from __future__ import annotations

import asyncpg

from engine.worker import wakeup
from tests.waiting import wait_until


async def test_a_burst_of_pokes_is_one_or_two_empty_notices(
    pool: asyncpg.Pool, database_url: str
) -> None:
    heard: list[tuple[str, str]] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            wakeup.PAYMENTS, lambda _c, _p, channel, payload: heard.append((channel, payload))
        )
        waker = wakeup.Waker(pool, wakeup.PAYMENTS)
        for _ in range(100):
            waker.poke()  # one in flight; the 99 after it fold into one more
        await waker.close()
        await wait_until(lambda: heard, what="the wake-up notice")
        # A poke after the burst is heard too (the sender is not stuck).
        before = len(heard)
        waker.poke()
        await waker.close()
        await wait_until(lambda: len(heard) > before, what="the next wake-up")
    finally:
        await listener.close()
    assert set(heard) == {(wakeup.PAYMENTS, "")}
    assert before <= 2, heard
