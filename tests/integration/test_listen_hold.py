"""A LISTEN connection is let go when its server falls silent, so the listener reconnects.

A primary whose machine vanished closes no socket: without a ping, a worker's LISTEN
connection would wait on it forever instead of finding the new primary (engine/store/db.py,
`hold`). The network is the outside world here: a TCP proxy in front of the real PostgreSQL
that can stop forwarding, as a partition would, without closing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from engine.store import db
from tests.waiting import wait_until


class Partition:
    """A TCP proxy to the server's Unix socket; `cut()` stops it forwarding, sockets open."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.forwarded = 0
        self.clients = 0  # connections piped so far
        self.open = asyncio.Event()
        self.open.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def cut(self) -> None:
        """Stop forwarding in both directions; nothing is closed."""
        self.open.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.open.wait()  # cut: held here for ever, as a dead link would
            writer.write(data)
            await writer.drain()
            self.forwarded += 1

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._writers += [writer, up_writer]
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.clients += 1

    async def close(self) -> None:
        """Stop every pipe and close every socket."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()  # at once: a cut link may hold unsent bytes
        for writer in self._writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def partitionable(database_url: str) -> AsyncIterator[tuple[Partition, str]]:
    """The proxy, and a URL of this test's database through it."""
    parts = urlsplit(database_url)
    folder = parse_qs(parts.query)["host"][0]
    partition = Partition(str(Path(folder) / f".s.PGSQL.{parts.port or 5432}"))
    server = await asyncio.start_server(partition._client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield partition, f"postgresql://postgres@127.0.0.1:{port}{parts.path}"
    finally:
        server.close()
        await partition.close()
        await server.wait_closed()


async def test_hold_lets_go_of_a_connection_whose_server_fell_silent(database_url: str) -> None:
    async with partitionable(database_url) as (partition, url):
        conn = await db.connect(url)
        try:
            until = asyncio.Event()
            holding = asyncio.create_task(db.hold(conn, until, every=0.2))
            # Healthy: pings go back and forth and the connection is held.
            seen = partition.forwarded
            await wait_until(lambda: partition.forwarded >= seen + 4, what="two pings answered")
            assert not holding.done()

            partition.cut()
            await asyncio.wait_for(holding, timeout=5)
            assert not until.is_set()
            # The ping that timed out was cancelled over a connection of its own: let it in, so
            # the proxy closes it too.
            await wait_until(lambda: partition.clients == 2, what="the ping's cancel request")
        finally:
            conn.terminate()


async def test_hold_returns_when_told_to_stop(database_url: str) -> None:
    conn = await db.connect(database_url)
    try:
        until = asyncio.Event()
        holding = asyncio.create_task(db.hold(conn, until, every=30))
        await asyncio.sleep(0)
        assert not holding.done()
        until.set()
        await asyncio.wait_for(holding, timeout=5)
        assert not conn.is_closed()  # the caller closes it
    finally:
        await conn.close()
