"""Helpers shared by the engine's integration tests: fast inserts, waiting, simulator knobs."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from config.settings import Settings
from engine.ids import Snowflake
from engine.models import Status
from engine.payments import trigger
from engine.store.repository import Repository
from simulator.server import SimulatorHandle

# Node 1 is what the intake app draws first from snowflake_node_seq; keep clear of it.
_SNOWFLAKE = Snowflake(1023)

FINAL = ("SUCCESS", "FAILED")
# The merchant every payment of insert_payments belongs to.
MID = "hamster_dummy_mid_001"

_INSERT = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, echo, request_digest,
     webhook_url, next_attempt_at, mode)
SELECT p.public_id, p.tid, $7, p.order_id, 'USR_123', p.amount, 'KRW',
       jsonb_build_object('mid', $7::text, 'orderNumber', p.order_id),
       'digest-' || p.order_id, $5, now() + make_interval(secs => $6), 'test'
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
    AS p(public_id, tid, order_id, amount)
"""


def tuned(settings: Settings, **changes: Any) -> Settings:
    """A validated copy of `settings` with some fields changed."""
    return Settings.model_validate({**settings.model_dump(), **changes})


def webhook_url(sim: SimulatorHandle) -> str:
    """The merchant receiver path every test payment reports to."""
    return f"{sim.url}/api/webhook/pg/DUMMY"


async def insert_payments(
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    n: int,
    *,
    first: int = 0,
    due_in_seconds: float = 0.0,
) -> list[str]:
    """Insert `n` PENDING payments in one statement; returns their tids in claim order."""
    numbers = range(first, first + n)
    tids = [f"DUMMY_20260101_{i:08d}" for i in numbers]
    await pool.execute(
        _INSERT,
        [_SNOWFLAKE.next_id() for _ in numbers],
        tids,
        [f"ORD_{i:08d}" for i in numbers],
        [1000 + i for i in numbers],
        webhook_url(sim),
        due_in_seconds,
        MID,
    )
    return tids


async def by_hand(repo: Repository, tid: str, status: Status, mid: str = MID) -> str:
    """The manual trigger as merchant `mid` with a test key would pull it."""
    return await trigger.trigger(repo, tid, status, mid=mid, mode="test", actor="merchant:test")


async def statuses(pool: asyncpg.Pool) -> dict[str, str]:
    """tid -> status of every payment."""
    return {
        r["tid"]: r["status"] for r in await pool.fetch("SELECT tid, status FROM payment_processes")
    }


async def count_unsettled(pool: asyncpg.Pool) -> int:
    """Payments that are not final yet (PENDING or PROCESSING)."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM payment_processes WHERE status IN ('PENDING', 'PROCESSING')"
        )
    )


async def acquirer_config(http: aiohttp.ClientSession, sim: SimulatorHandle, **cfg: Any) -> None:
    """Change the simulated acquirer's success_rate / latency_ms."""
    async with http.post(f"{sim.url}/acquirer/admin/config", json=cfg) as resp:
        assert resp.status == 200, await resp.text()


async def merchant_faults(http: aiohttp.ClientSession, sim: SimulatorHandle, **cfg: Any) -> None:
    """Script the merchant receiver's next failures (fail_next, status, delay_ms)."""
    async with http.post(f"{sim.url}/api/webhook/admin/faults", json=cfg) as resp:
        assert resp.status == 200, await resp.text()


async def ledger(http: aiohttp.ClientSession, sim: SimulatorHandle) -> list[dict[str, Any]]:
    """Every charge the acquirer took."""
    async with http.get(f"{sim.url}/acquirer/charges") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
    charges: list[dict[str, Any]] = body["charges"]
    assert body["count"] == len(charges)
    return charges


async def acquirer_stats(http: aiohttp.ClientSession, sim: SimulatorHandle) -> dict[str, int]:
    """authorizeCalls / approved / declined counters of the acquirer."""
    async with http.get(f"{sim.url}/acquirer/stats") as resp:
        assert resp.status == 200
        stats: dict[str, int] = await resp.json()
    return stats
