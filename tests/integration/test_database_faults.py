"""PostgreSQL going away: the intake answers 503 (never hangs, never 500) and loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from config.settings import Settings
from engine import errors
from engine.store import db
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.pgserver import OwnServer
from tests.waiting import wait_until


@pytest.fixture
def own_server() -> Iterator[OwnServer]:
    server = OwnServer()
    yield server
    server.remove()


@pytest.fixture
async def own_settings(own_server: OwnServer, sim: SimulatorHandle) -> AsyncIterator[Settings]:
    conn = await asyncpg.connect(own_server.url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    yield Settings(
        database_url=own_server.url,
        acquirer_url=f"{sim.url}/acquirer",
        default_webhook_url=f"{sim.url}/api/webhook/pg/DUMMY",
        polling_initial_delay_ms=0,
        polling_fixed_delay_ms=100,
        acquirer_requeue_seconds=0.05,
    )


@pytest.fixture
async def own_headers(own_server: OwnServer, own_settings: Settings) -> dict[str, str]:
    """The Authorization header of a test key of MID, on the server this test stops."""
    pool = await db.create_pool(own_server.url, min_size=1, max_size=2)
    try:
        repo = Repository(pool)
        await repo.merchants.create_merchant(MID, "Test merchant")
        key = (await repo.merchants.issue_key(MID, "test", own_settings.api_key_secret)).key
    finally:
        await pool.close()
    return {"Authorization": f"Bearer {key}"}


async def test_intake_answers_503_while_the_database_is_down_and_keeps_what_it_accepted(
    aiohttp_client: Any,
    own_server: OwnServer,
    own_settings: Settings,
    own_headers: dict[str, str],
) -> None:
    client: TestClient = await aiohttp_client(create_app(own_settings), headers=own_headers)
    first = await client.post("/api/payment", json=SEED_REQUEST)
    assert first.status == 202
    tid = (await first.json())["transactionId"]

    own_server.stop()
    down = await client.post(
        "/api/payment",
        json=SEED_REQUEST | {"orderId": "ORD_DOWN"},
        timeout=aiohttp.ClientTimeout(total=20),
    )
    assert down.status == 503
    assert down.headers["Content-Type"].startswith("application/problem+json")
    assert down.headers["Retry-After"] == "1"
    lookup = await client.get(f"/api/payment/transaction/{tid}")
    assert lookup.status == 503

    own_server.start()

    async def accepted() -> bool:
        resp = await client.post("/api/payment", json=SEED_REQUEST | {"orderId": "ORD_DOWN"})
        return resp.status == 202

    await wait_until(accepted, timeout=20, what="intake accepting again")
    # What got a 202 before the crash is still there.
    again = await client.get(f"/api/payment/transaction/{tid}")
    assert again.status == 200
    assert (await again.json())["orderId"] == SEED_REQUEST["orderId"]


async def test_worker_backs_off_and_settles_after_the_database_returns(
    aiohttp_client: Any,
    own_server: OwnServer,
    own_settings: Settings,
    own_headers: dict[str, str],
    sim: SimulatorHandle,
) -> None:
    client: TestClient = await aiohttp_client(create_app(own_settings), headers=own_headers)
    pool = await db.create_pool(own_server.url, min_size=1, max_size=4)
    async with aiohttp.ClientSession() as http:
        worker = Worker(own_settings, Repository(pool), http, owner="survivor")
        task = asyncio.create_task(worker.serve(own_server.url))
        try:
            own_server.stop()

            async def pass_fails() -> bool:
                try:
                    await worker.payments_pass()
                except errors.DatabaseUnavailable:
                    return True
                return False

            # The worker's passes now fail with DatabaseUnavailable; it keeps running.
            await wait_until(pass_fails, timeout=20, what="the worker seeing the database down")
            assert not task.done()
            own_server.start()
            resp = await wait_until(
                lambda: _post(client), timeout=20, what="intake accepting after restart"
            )
            tid = str(resp)

            async def settled() -> bool:
                r = await client.get(f"/api/payment/transaction/{tid}")
                return r.status == 200 and (await r.json())["status"] in ("SUCCESS", "FAILED")

            await wait_until(settled, timeout=20, what="payment settled after restart")
            assert not task.done()
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
            await pool.close()


async def _post(client: TestClient) -> str | None:
    resp = await client.post("/api/payment", json=SEED_REQUEST | {"orderId": "ORD_AFTER"})
    if resp.status != 202:
        return None
    return str((await resp.json())["transactionId"])
