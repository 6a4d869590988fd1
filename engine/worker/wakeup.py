"""Waking the workers after a commit, coalesced, instead of a NOTIFY inside every transaction.

A NOTIFY in a transaction makes its commit queue behind PostgreSQL's single notification
lock, which caps commits near a thousand a second however fast the rest is. So the intake
commits first and then pokes: one NOTIFY in flight at a time per process, and any pokes that
arrive meanwhile fold into one more after it (engine/store/notices.py, with an empty payload).
A poke lost to a crash only costs latency: the scheduled poll still finds the row.
"""

from __future__ import annotations

import asyncpg

from engine.store import notices

PAYMENTS = "payments_pending"
REFUNDS = "refunds_pending"
WEBHOOKS = "webhooks_pending"


class Wakers:
    """One Waker per channel, for a process that creates work."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.payments = Waker(pool, PAYMENTS)
        self.refunds = Waker(pool, REFUNDS)
        self.webhooks = Waker(pool, WEBHOOKS)

    async def close(self) -> None:
        """Let the NOTIFYs in flight finish."""
        for waker in (self.payments, self.refunds, self.webhooks):
            await waker.close()


class Waker:
    """Coalescing wake-up for one channel: a NOTIFY with an empty payload, sent by Notices.

    Every poke asks for the same notice, so the pokes that arrive while one is in flight fold
    into one more after it (engine/store/notices.py).
    """

    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._notices = notices.Notices(pool, channel)

    def poke(self) -> None:
        """Ask for a NOTIFY soon; never blocks and never raises."""
        self._notices.send("")

    async def close(self) -> None:
        """Let a NOTIFY in flight finish."""
        await self._notices.close()
