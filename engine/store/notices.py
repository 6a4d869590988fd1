"""NOTIFY after the commit, coalesced: the notices a process sends on one channel.

A NOTIFY inside a transaction makes its commit wait for PostgreSQL's single notification
lock, held until the commit is done, so notifying commits go one at a time. Sent after the
commit instead, the notices waiting meanwhile go together in one statement: one lock taken
per batch, not per change. A notice lost to a crash between the commit and the send costs
the listener only latency (see where each is used for what catches up).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

log = structlog.get_logger()

SEND = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"


class Notices:
    """Coalescing NOTIFY sender for one channel: send() queues, one batch in flight."""

    def __init__(self, pool: asyncpg.Pool, channel: str) -> None:
        self._pool = pool
        self._channel = channel
        self._queued: dict[str, None] = {}  # insertion-ordered, duplicates folded
        self._task: asyncio.Task[None] | None = None

    def send(self, payload: str) -> None:
        """Queue a notice for the next batch; never blocks and never raises."""
        self._queued[payload] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = list(self._queued), {}
            try:
                await self._pool.execute(SEND, self._channel, batch)
            except Exception as exc:  # best effort: see the module's note
                log.warning("notices.failed", channel=self._channel, n=len(batch), error=str(exc))
                return

    async def close(self) -> None:
        """Let the batch in flight finish."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 2)
