"""The webhook retry schedule: long backoffs, cut short when the endpoint answers again."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg

from config.settings import Settings
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.integration.engine_support import insert_payments, merchant_faults, tuned
from tests.waiting import wait_until

BACKOFF = 60.0


async def _by_status(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY 1")
    return {r["status"]: r["n"] for r in rows}


async def test_an_endpoint_back_up_gets_its_waiting_deliveries_at_once(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    s = tuned(
        settings, webhook_backoff_initial_seconds=BACKOFF, webhook_backoff_max_seconds=BACKOFF
    )
    worker = Worker(s, repo, http, owner="w")
    await insert_payments(pool, sim, 4)
    assert (await worker.payments_pass()).settled == 4
    await merchant_faults(http, sim, fail_next=4, status=503)
    failed = await worker.webhooks_pass()
    assert (failed.claimed, failed.delivered) == (4, 0)
    assert failed.retry_in is not None and failed.retry_in >= BACKOFF
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries"
            " WHERE status = 'PENDING' AND next_attempt_at > now() + interval '50 seconds'"
        )
        == 4
    )

    # The endpoint is back: a new event gets through, and the waiting ones follow at once.
    await insert_payments(pool, sim, 1, first=4)
    assert (await worker.payments_pass()).settled == 1
    recovered = await worker.webhooks_pass()
    assert (recovered.claimed, recovered.delivered) == (1, 1)
    assert recovered.retry_in is not None and recovered.retry_in < 1  # the loop goes again now

    async def all_delivered() -> bool:
        await worker.webhooks_pass()
        return await _by_status(pool) == {"DELIVERED": 5}

    started = asyncio.get_running_loop().time()
    await wait_until(all_delivered, what="the waiting deliveries", timeout=5)
    assert asyncio.get_running_loop().time() - started < BACKOFF / 10


async def test_a_failure_does_not_hasten_anything(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    s = tuned(
        settings, webhook_backoff_initial_seconds=BACKOFF, webhook_backoff_max_seconds=BACKOFF
    )
    worker = Worker(s, repo, http, owner="w")
    await insert_payments(pool, sim, 2)
    assert (await worker.payments_pass()).settled == 2
    await merchant_faults(http, sim, fail_next=2, status=500)
    assert (await worker.webhooks_pass()).delivered == 0
    # Still failing: nothing is pulled forward, the backoff holds.
    await insert_payments(pool, sim, 1, first=2)
    assert (await worker.payments_pass()).settled == 1
    await merchant_faults(http, sim, fail_next=1, status=500)
    result = await worker.webhooks_pass()
    assert (result.claimed, result.delivered) == (1, 0)
    assert (await worker.webhooks_pass()).claimed == 0
    assert await _by_status(pool) == {"PENDING": 3}
