"""The peer: pgqueuer (PyPI) enqueueing and draining jobs on the same database.

Only pgqueuer's public API is used: `Queries.from_asyncpg_connection(...)`, its `install` and
`enqueue` (the queue filled in one statement), and `QueueManager(queries)` with `@entrypoint`s,
started as separate processes (as many as the engine has workers, with the engine's batch
size):

    python -m bench.pgqueuer_peer worker --dsn URL --batch-size 50 [--sim URL]

Two kinds of job:
- `bench_noop` does nothing: the issue's peer, pgqueuer's own cost per job.
- `bench_calls` (with --sim) makes the two HTTP calls a payment makes, against the same
  simulator and with the engine's own client code: the acquirer client's authorize, then
  `sending.send` to the merchant receiver, which verifies the signature. It succeeds only if
  both answer 200. This is the
  like-for-like peer: the same outside work, with pgqueuer's queue instead of the engine's
  state machine, leases and outbox.

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

import aiohttp
import asyncpg

from config.settings import DEV_WEBHOOK_SECRET
from engine import loop as event_loop
from engine.models import Claimed, Delivery
from engine.providers.acquirer import AcquirerClient
from engine.webhooks import egress, sending

ENTRYPOINT = "bench_noop"
CALLS_ENTRYPOINT = "bench_calls"
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


async def enqueue(conn: asyncpg.Connection, n: int, entrypoint: str = ENTRYPOINT) -> float:
    """Enqueue `n` jobs in one call (one statement); returns the seconds it took."""
    from pgqueuer import Queries

    queries = Queries.from_asyncpg_connection(conn)
    started = time.perf_counter()
    await queries.enqueue([entrypoint] * n, [None] * n, [0] * n)
    return time.perf_counter() - started


async def failures(conn: asyncpg.Connection, limit: int = 3) -> list[tuple[int, str]]:
    """The jobs that failed, by exception type and message: (count, what), most first."""
    rows = await conn.fetch(
        """
        SELECT count(*) AS n,
               coalesce(traceback->>'exception_type', '?') || ': '
               || left(coalesce(traceback->>'exception_message', ''), 200) AS what
        FROM pgqueuer_log WHERE status = 'exception'
        GROUP BY 2 ORDER BY 1 DESC LIMIT $1
        """,
        limit,
    )
    return [(int(r["n"]), str(r["what"])) for r in rows]


async def remaining(conn: asyncpg.Connection) -> int:
    """Jobs not done yet (queued or picked)."""
    return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))


async def finished_at(conn: asyncpg.Connection) -> Any:
    """When the last job was recorded done, and how many were."""
    return await conn.fetchrow(
        "SELECT max(created) AS last, count(*) AS n FROM pgqueuer_log WHERE status = 'successful'"
    )


async def payment_calls(acquirer: AcquirerClient, sim: str, n: int) -> None:
    """What a worker sends the outside world for one payment, through the engine's own code:
    the acquirer client's authorize, then `sending.send` (payload, signature, POST)."""
    ref = f"PQ_{n}"
    outcome = await acquirer.authorize(Claimed(n, ref, 1000, "KRW", ref, attempts=1))
    delivery = Delivery(
        id=n,
        event_id=f"evt_{ref}",
        event_status=outcome.status.value,
        url=f"{sim}/api/webhook/pg/PEER",
        attempts=1,
        payment_id=n,
        tid=ref,
        amount=1000,
        currency="KRW",
        approval_no=outcome.approval_no,
        fail_reason=outcome.fail_reason,
        echo={},
    )
    # As the engine's workers are configured: the simulator is the one allowed loopback host.
    policy = egress.Policy(allowed_hosts=egress.allowed_hosts(sim.split("://", 1)[1]))
    # Raises WebhookRetryable unless the receiver, which verifies the signature, answers 2xx.
    await sending.send(
        acquirer.session, delivery, timeout=5, secrets=[DEV_WEBHOOK_SECRET], policy=policy
    )


async def _work(dsn: str, batch_size: int, sim: str | None) -> None:
    from pgqueuer import Job, Queries, QueueManager

    conn = await asyncpg.connect(dsn, server_settings={"application_name": APPLICATION_NAME})
    qm = QueueManager(Queries.from_asyncpg_connection(conn))
    # The engine worker's pool settings, so both keep the same connections alive.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30))

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        return None

    if sim:
        acquirer = AcquirerClient(session, f"{sim}/acquirer", timeout_seconds=5, max_attempts=1)

        # At most a batch of calls in flight per process, as an engine worker has (it claims a
        # batch, makes its calls, settles, claims again). Unbounded (pgqueuer's default), the
        # processes kept dequeuing while calls were in flight, thousands queued at the one
        # simulator and some took over the 5 s timeout: 16 to 6,106 of 50,000 jobs failed with
        # ProviderUnavailable: TimeoutError, and the peer's line read n/a.
        @qm.entrypoint(CALLS_ENTRYPOINT, concurrency_limit=batch_size)
        async def calls(job: Job) -> None:
            await payment_calls(acquirer, sim, int(job.id))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    try:
        await qm.run(batch_size=batch_size, dequeue_timeout=timedelta(seconds=30))
    finally:
        await session.close()
        with contextlib.suppress(Exception):
            await conn.close()


def main() -> None:
    """`worker`: one pgqueuer QueueManager process (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m bench.pgqueuer_peer")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--dsn", required=True)
    worker.add_argument("--batch-size", type=int, default=50)
    worker.add_argument("--sim", help="the simulator's base URL, for bench_calls jobs")
    args = parser.parse_args()
    # The same event loop as the engine's processes (uvloop), so the comparison is like for like.
    event_loop.run(_work(args.dsn, args.batch_size, args.sim))


if __name__ == "__main__":
    main()
