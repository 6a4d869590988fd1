"""Worker.serve in process: woken by NOTIFY, paced by the scheduled poll, stopped cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.payments import claim
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST
from tests.integration.engine_support import (
    FINAL,
    acquirer_config,
    acquirer_stats,
    count_unsettled,
    insert_payments,
    ledger,
    tuned,
)
from tests.waiting import wait_until

HOOK_PATH = "/api/webhook/pg/DUMMY"


@asynccontextmanager
async def serving(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run worker.serve while open; stop it and require a clean end on the way out."""
    assert worker.settings.database_url is not None
    task = asyncio.create_task(worker.serve(worker.settings.database_url))
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
    assert task.done() and task.exception() is None


async def _listening(pool: asyncpg.Pool) -> bool:
    """True once a session of this database has run its last LISTEN (webhooks, after payments)."""
    n = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'LISTEN%webhooks_pending%'"
    )
    return bool(n)


class PassCounter:
    """Counts the payment passes a worker starts and finishes (wraps its payments_pass)."""

    def __init__(self, worker: Worker) -> None:
        self.started = self.finished = 0
        original = worker.payments_pass

        async def counted() -> claim.Pass:
            self.started += 1
            try:
                return await original()
            finally:
                self.finished += 1

        worker.payments_pass = counted  # type: ignore[method-assign]

    def idle_after(self, passes: int) -> bool:
        """At least `passes` passes done and none running."""
        return self.finished >= passes and self.started == self.finished


async def _settled(pool: asyncpg.Pool, tid: str) -> bool:
    status = await pool.fetchval("SELECT status FROM payment_processes WHERE tid = $1", tid)
    return status in FINAL


async def test_serve_settles_and_reports_when_notified(
    client: TestClient[web.Request, web.Application],
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    # No scheduled poll: after its first pass the worker only wakes on NOTIFY.
    worker = Worker(tuned(settings, polling_enabled=False), repo, http, owner="serving")
    tids = []
    async with serving(worker):
        for n, order_id in enumerate(("ORD_456", "ORD_457"), start=1):
            resp = await client.post("/api/payment", json={**SEED_REQUEST, "orderId": order_id})
            assert resp.status == 202
            tids.append((await resp.json())["transactionId"])
            await sim.wait_for_webhooks(n, path=HOOK_PATH, timeout=5.0)

    hooks = await sim.wait_for_webhooks(2, path=HOOK_PATH, timeout=0)
    assert sorted(h["body"]["transactionId"] for h in hooks) == sorted(tids)
    rows = await pool.fetch("SELECT id, status, lease_owner FROM payment_processes")
    assert len(rows) == 2
    assert all(r["status"] in FINAL and r["lease_owner"] is None for r in rows)
    delivered = await pool.fetch(
        "SELECT payment_id FROM webhook_deliveries WHERE delivered_at IS NOT NULL"
    )
    assert sorted(r["payment_id"] for r in delivered) == sorted(r["id"] for r in rows)
    assert (
        await pool.fetchval("SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING'")
        == 0
    )
    delivered = await pool.fetch("SELECT status FROM webhook_deliveries")
    assert [r["status"] for r in delivered] == ["DELIVERED", "DELIVERED"]
    # The overview's deltas of those settles: folded into the rollup by the worker's lane (the
    # rollup has rows only through a fold).
    async with serving(Worker(tuned(settings, polling_enabled=False), repo, http, owner="fold")):
        await wait_until(
            lambda: _folded(pool), what="the worker folding the overview's deltas", timeout=10
        )
    assert await pool.fetchval("SELECT sum(n) FROM payment_rollup") == 2


async def _folded(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM payment_rollup_delta")


@pytest.mark.parametrize("grace", [5.0, 0.0], ids=["finish-in-flight", "cancel-in-flight"])
async def test_stop_with_payments_in_flight_leaves_none_processing(
    grace: float,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await acquirer_config(http, sim, latency_ms=300)
    tids = await insert_payments(pool, sim, 5)
    worker = Worker(tuned(settings, shutdown_grace_seconds=grace), repo, http, owner="leaving")

    async def held() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING'"
                " AND lease_owner = $1",
                worker.owner,
            )
        )

    loop = asyncio.get_running_loop()
    async with serving(worker):
        await wait_until(held, what="the worker holds payments")
        stopped_at = loop.time()
        worker.stop()
    took = loop.time() - stopped_at

    rows = await pool.fetch(
        "SELECT tid, status, lease_owner, next_attempt_at <= now() AS due FROM payment_processes"
    )
    assert sorted(r["tid"] for r in rows) == tids
    assert all(r["status"] != "PROCESSING" and r["lease_owner"] is None for r in rows)
    if grace:
        # The pass in flight was allowed to finish: everything it held is final.
        assert all(r["status"] in FINAL for r in rows)
    else:
        # Cancelled mid-call: what it held is handed back now, not at lease expiry.
        assert all(r["status"] == "PENDING" and r["due"] for r in rows)
        assert took < 2.0

    # Nothing was lost: another worker finishes the rest, and nobody was charged twice.
    await acquirer_config(http, sim, latency_ms=0)
    successor = Worker(settings, repo, http, owner="successor")

    async def drained() -> bool:
        await successor.payments_pass()
        return await count_unsettled(pool) == 0

    await wait_until(drained, what="the successor drains the queue")
    references = [c["reference"] for c in await ledger(http, sim)]
    assert len(references) == len(set(references))
    stats = await acquirer_stats(http, sim)
    assert stats["approved"] + stats["declined"] == 5


async def test_scheduled_poll_finds_work_nobody_announced(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    # A row inserted straight into the table announces nothing (the intake pokes the workers
    # after commit); only the scheduled poll can find it.
    polled = tuned(
        settings, polling_enabled=True, polling_initial_delay_ms=0, polling_fixed_delay_ms=200
    )
    worker = Worker(polled, repo, http, owner="poller")
    passes = PassCounter(worker)

    async def idle_and_listening() -> bool:
        # Its first pass (at start) and the one after LISTEN (in case it missed some) are done.
        return await _listening(pool) and passes.idle_after(2)

    async with serving(worker):
        await wait_until(idle_and_listening, what="the worker is listening and idle")
        [tid] = await insert_payments(pool, sim, 1, due_in_seconds=-60)
        await wait_until(lambda: _settled(pool, tid), what="the poll settles it", timeout=3.0)
        await sim.wait_for_webhooks(1, path=HOOK_PATH, timeout=3.0)


async def test_scheduled_poll_finds_work_that_fell_due_after_its_notify(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    polled = tuned(
        settings, polling_enabled=True, polling_initial_delay_ms=0, polling_fixed_delay_ms=200
    )
    worker = Worker(polled, repo, http, owner="poller")
    async with serving(worker):
        await wait_until(lambda: _listening(pool), what="the worker is listening")
        # The insert's NOTIFY wakes the worker too early: the row is not due for 0.5 s.
        [tid] = await insert_payments(pool, sim, 1, due_in_seconds=0.5)
        await wait_until(lambda: _settled(pool, tid), what="the poll settles it", timeout=3.0)
    row = await pool.fetchrow(
        "SELECT processing_started_at >= next_attempt_at AS on_time, attempts"
        " FROM payment_processes WHERE tid = $1",
        tid,
    )
    assert row["on_time"] is True and row["attempts"] == 1
