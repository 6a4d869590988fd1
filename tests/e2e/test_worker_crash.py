"""Real worker processes killed mid-flight: every payment still ends final exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from simulator.server import SimulatorHandle
from tests.e2e.conftest import Processes, process_env, wait_until

pytestmark = pytest.mark.e2e

WORKER = [sys.executable, "-m", "engine.worker"]
HELD = "SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING' AND lease_owner LIKE $1"


def worker_env(database_url: str, sim: SimulatorHandle) -> dict[str, str]:
    return process_env(
        DATABASE_URL=database_url,
        ENGINE_ACQUIRER_URL=f"{sim.url}/acquirer",
        ENGINE_DEFAULT_WEBHOOK_URL=f"{sim.url}/api/webhook/pg/DUMMY",
        ENGINE_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{sim.port}",
        # A short lease so the survivor takes over the dead worker's rows quickly.
        ENGINE_LEASE_SECONDS="1",
        ENGINE_ACQUIRER_TIMEOUT_SECONDS="0.8",
        ENGINE_ATOM_TIMEOUT_SECONDS="0.8",
        ENGINE_REAPER_INTERVAL_MS="100",
        ENGINE_POLLING_INITIAL_DELAY_MS="0",
        ENGINE_POLLING_FIXED_DELAY_MS="200",
        ENGINE_SHUTDOWN_GRACE_SECONDS="5",
    )


async def _post_payments(client: TestClient, n: int) -> list[str]:
    tids = []
    for i in range(n):
        resp = await client.post(
            "/api/payment",
            json={
                "userPublicId": f"USR_{i}",
                "orderId": f"ORD_{i}",
                "amount": 1000 + i,
                "echo": {"mid": "hamster_dummy_mid_001", "i": i},
            },
        )
        assert resp.status == 202
        tids.append((await resp.json())["transactionId"])
    return tids


async def _count(conn: asyncpg.Connection, sql: str, *args: object) -> int:
    return int(await conn.fetchval(sql, *args))


async def _set_latency(sim: SimulatorHandle, ms: int) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{sim.url}/acquirer/admin/config", json={"latency_ms": ms}) as resp,
    ):
        assert resp.status == 200


async def _assert_exactly_once(conn: asyncpg.Connection, sim: SimulatorHandle, n: int) -> None:
    rows = await conn.fetch("SELECT id, tid, status FROM payment_processes")
    assert len(rows) == n
    assert {r["status"] for r in rows} <= {"SUCCESS", "FAILED"}
    async with aiohttp.ClientSession() as s, s.get(f"{sim.url}/acquirer/charges") as resp:
        charges = (await resp.json())["charges"]
    charged = Counter(c["reference"] for c in charges)
    # No double charge, and the ledger is exactly the SUCCESS payments.
    assert all(k == 1 for k in charged.values()), charged
    assert set(charged) == {r["tid"] for r in rows if r["status"] == "SUCCESS"}
    # One outcome event per payment, each delivered.
    per_payment = Counter(
        r["payment_id"] for r in await conn.fetch("SELECT payment_id FROM webhook_deliveries")
    )
    assert set(per_payment) == {r["id"] for r in rows}
    assert set(per_payment.values()) == {1}
    # What the merchant saw, deduplicated by webhook-id, is exactly the final states.
    hooks = await sim.wait_for_webhooks(n, path="/api/webhook/pg/DUMMY", timeout=20)
    seen = {h["headers"]["webhook-id"]: h["body"] for h in hooks if h["status"] == 200}
    assert {(b["transactionId"], b["status"]) for b in seen.values()} == {
        (r["tid"], r["status"]) for r in rows
    }


async def test_sigkill_mid_flight_still_settles_each_payment_once(
    processes: Processes, client: TestClient, sim: SimulatorHandle, database_url: str
) -> None:
    n = 40
    await _set_latency(sim, 400)  # so the kill lands while acquirer calls are in flight
    conn = await asyncpg.connect(database_url)
    try:
        first = processes.start("worker-a", WORKER, worker_env(database_url, sim))
        await _post_payments(client, n)
        held = HELD
        await wait_until(
            lambda: _count(conn, held, f"%:{first.pid}:%"),
            timeout=20,
            what=f"worker A holding rows\n{processes.output()}",
        )
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert await _count(conn, held, f"%:{first.pid}:%") > 0  # it died holding them

        await _set_latency(sim, 0)
        processes.start("worker-b", WORKER, worker_env(database_url, sim))
        await wait_until(
            lambda: _all_final(conn, n),
            timeout=30,
            what=f"all {n} final and delivered\n{processes.output()}",
        )
        await _assert_exactly_once(conn, sim, n)
    finally:
        await conn.close()


async def _all_final(conn: asyncpg.Connection, n: int) -> bool:
    done = await _count(
        conn,
        "SELECT count(*) FROM payment_processes p WHERE status IN ('SUCCESS','FAILED')"
        " AND EXISTS (SELECT 1 FROM webhook_deliveries d"
        "             WHERE d.payment_id = p.id AND d.status = 'DELIVERED')",
    )
    return done == n


async def test_sigterm_releases_what_the_worker_holds(
    processes: Processes, client: TestClient, sim: SimulatorHandle, database_url: str
) -> None:
    n = 20
    await _set_latency(sim, 300)
    conn = await asyncpg.connect(database_url)
    try:
        worker = processes.start("worker", WORKER, worker_env(database_url, sim))
        await _post_payments(client, n)
        held = HELD
        await wait_until(
            lambda: _count(conn, held, f"%:{worker.pid}:%"),
            timeout=20,
            what=f"worker holding rows\n{processes.output()}",
        )
        os.kill(worker.pid, signal.SIGTERM)
        try:
            code = worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not exit on SIGTERM\n{processes.output()}")
        assert code == 0, processes.output()
        # Nothing is left stuck: each row is final, or back in the queue for another worker.
        assert (
            await _count(conn, "SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING'")
            == 0
        )

        await _set_latency(sim, 0)
        processes.start("worker-2", WORKER, worker_env(database_url, sim))
        await wait_until(
            lambda: _all_final(conn, n),
            timeout=30,
            what=f"all final after restart\n{processes.output()}",
        )
        await _assert_exactly_once(conn, sim, n)
    finally:
        await conn.close()
