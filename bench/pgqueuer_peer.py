"""The peer: pgqueuer (PyPI) enqueueing and draining no-op jobs on the same database.

Only pgqueuer's public API is used: `Queries.from_asyncpg_connection(...)`, its `install` and
`enqueue` (the queue filled in one statement), and `QueueManager(queries)` with an
`@entrypoint` that does nothing, started as separate
processes (as many as the engine has workers, with the engine's batch size):

    python -m bench.pgqueuer_peer worker --dsn URL --batch-size 10

A job is done when pgqueuer has moved it from its queue table to its log table; the drain time
runs from the enqueue's commit to the newest `created` in the log (both the database's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from datetime import timedelta
from typing import Any

import asyncpg

from engine import loop as event_loop

ENTRYPOINT = "bench_noop"
APPLICATION_NAME = "bench-pgqueuer-peer"


def available() -> str | None:
    """pgqueuer's version, or None when it is not installed (`pip install -e '.[bench]'`)."""
    try:
        import pgqueuer
    except ImportError:
        return None
    return str(getattr(pgqueuer, "__version__", "?"))


async def install(conn: asyncpg.Connection) -> None:
    """Create pgqueuer's tables in this database unless they exist."""
    from pgqueuer import Queries

    exists = await conn.fetchval("SELECT to_regclass('pgqueuer') IS NOT NULL")
    if not exists:
        await Queries.from_asyncpg_connection(conn).install()


async def reset(conn: asyncpg.Connection) -> None:
    """Empty the queue, its log and statistics."""
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")


async def enqueue(conn: asyncpg.Connection, n: int) -> float:
    """Enqueue `n` no-op jobs in one call (one statement); returns the seconds it took."""
    from pgqueuer import Queries

    queries = Queries.from_asyncpg_connection(conn)
    started = time.perf_counter()
    await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
    return time.perf_counter() - started


async def remaining(conn: asyncpg.Connection) -> int:
    """Jobs not done yet (queued or picked)."""
    return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))


async def finished_at(conn: asyncpg.Connection) -> Any:
    """When the last job was recorded done, and how many were."""
    return await conn.fetchrow(
        "SELECT max(created) AS last, count(*) AS n FROM pgqueuer_log WHERE status = 'successful'"
    )


async def _work(dsn: str, batch_size: int) -> None:
    from pgqueuer import Job, Queries, QueueManager

    conn = await asyncpg.connect(dsn, server_settings={"application_name": APPLICATION_NAME})
    qm = QueueManager(Queries.from_asyncpg_connection(conn))

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        return None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    try:
        await qm.run(batch_size=batch_size, dequeue_timeout=timedelta(seconds=30))
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


def main() -> None:
    """`worker`: one pgqueuer QueueManager process with a no-op entrypoint."""
    parser = argparse.ArgumentParser(prog="python -m bench.pgqueuer_peer")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--dsn", required=True)
    worker.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    # The same event loop as the engine's processes (uvloop), so the comparison is like for like.
    event_loop.run(_work(args.dsn, args.batch_size))


if __name__ == "__main__":
    main()
