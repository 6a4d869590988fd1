"""Waking the workers after a commit, coalesced, instead of a NOTIFY inside every transaction.

A NOTIFY in a transaction makes its commit queue behind PostgreSQL's single notification
lock, which caps commits near a thousand a second however fast the rest is. So the intake
commits first and then pokes: one NOTIFY in flight at a time per process, and any pokes that
arrive meanwhile fold into one more after it. A poke lost to a crash only costs latency: the
scheduled poll still finds the row.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

log = structlog.get_logger()

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
    """Coalescing NOTIFY sender for one channel."""

    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._pool = pool
        self._channel = channel
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Ask for a NOTIFY soon; never blocks and never raises."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._pool.execute("SELECT pg_notify($1, '')", self._channel)
            except Exception as exc:  # the poll is the safety net; a poke is best effort
                log.warning("wakeup.failed", channel=self._channel, error=str(exc))
                return

    async def close(self) -> None:
        """Let a NOTIFY in flight finish."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 2)
