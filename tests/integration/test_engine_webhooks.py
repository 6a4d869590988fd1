"""Webhook dispatch from the outbox on a real PostgreSQL and the simulated merchant: retries,
dead letters, redelivery, and the seed's payload shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.store.deliveries import Delivered
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.acquirer import DECLINE_REASONS
from simulator.merchant import MERCHANT_STATE
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST
from tests.integration.engine_support import (
    MID,
    acquirer_config,
    insert_payments,
    ledger,
    merchant_faults,
    tuned,
)
from tests.waiting import wait_until

# Clock slack between statements of one test.
_SLACK = timedelta(seconds=1)


def _header(hook: dict[str, Any], name: str) -> str | None:
    headers: dict[str, str] = hook["headers"]
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _received(sim: SimulatorHandle) -> list[dict[str, Any]]:
    return list(sim.app[MERCHANT_STATE].received)


async def _settled_one(pool: asyncpg.Pool, worker: Worker, sim: SimulatorHandle) -> asyncpg.Record:
    """Insert one payment and settle it; returns its row."""
    [tid] = await insert_payments(pool, sim, 1)
    assert (await worker.payments_pass()).settled == 1
    row: asyncpg.Record = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    return row


async def _settled_many(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    n: int,
    *,
    webhook_batch_size: int,
) -> Worker:
    """Insert and settle `n` payments (their webhooks now wait); returns the worker."""
    await insert_payments(pool, sim, n)
    worker = Worker(
        tuned(settings, webhook_batch_size=webhook_batch_size), repo, http, owner="hooks"
    )
    assert (await worker.payments_pass()).settled == n
    return worker


async def _deliver_until(
    pool: asyncpg.Pool, worker: Worker, status: str, *, timeout: float = 5.0
) -> asyncpg.Record:
    """Run webhook passes until the (only) delivery reaches `status`; returns it."""

    async def reached() -> asyncpg.Record | None:
        await worker.webhooks_pass()
        row: asyncpg.Record | None = await pool.fetchrow(
            "SELECT * FROM webhook_deliveries WHERE status = $1", status
        )
        return row

    return await wait_until(reached, what=f"the delivery is {status}", timeout=timeout)


async def _attempts(pool: asyncpg.Pool, delivery_id: int) -> list[tuple[int, int | None]]:
    rows = await pool.fetch(
        "SELECT attempt_no, response_code, error FROM webhook_attempts WHERE delivery_id = $1"
        " ORDER BY id",
        delivery_id,
    )
    for r in rows:
        assert (r["error"] is None) == (r["response_code"] == 200)
    return [(r["attempt_no"], r["response_code"]) for r in rows]


async def test_failed_webhook_is_retried_until_delivered(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    worker = Worker(settings, repo, http, owner="hooks")
    payment = await _settled_one(pool, worker, sim)
    await merchant_faults(http, sim, fail_next=3, status=503)

    delivery = await _deliver_until(pool, worker, "DELIVERED")
    assert delivery["payment_id"] == payment["id"] and delivery["attempts"] == 4
    assert delivery["last_response_code"] == 200 and delivery["last_error"] is None
    assert delivery["delivered_at"] is not None and delivery["lease_owner"] is None
    assert await _attempts(pool, delivery["id"]) == [(1, 503), (2, 503), (3, 503), (4, 200)]
    after = await repo.payments.payment_by_tid(payment["tid"], MID, "test")
    assert after is not None
    assert after.webhook_sent_at is not None and after.webhook_response_code == 200

    hooks = _received(sim)
    assert [h["status"] for h in hooks] == [503, 503, 503, 200]
    assert {_header(h, "webhook-id") for h in hooks} == {delivery["event_id"]}
    assert len({h["raw"] for h in hooks}) == 1  # the same event, byte for byte
    assert (await worker.webhooks_pass()).claimed == 0
    assert len(_received(sim)) == 4


async def test_webhook_is_dead_after_max_attempts_and_can_be_redelivered(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    worker = Worker(tuned(settings, webhook_max_attempts=3), repo, http, owner="hooks")
    payment = await _settled_one(pool, worker, sim)
    await merchant_faults(http, sim, fail_next=10, status=503)

    dead = await _deliver_until(pool, worker, "DEAD")
    assert dead["attempts"] == 3 and dead["last_response_code"] == 503
    assert dead["lease_owner"] is None and dead["delivered_at"] is None
    assert await _attempts(pool, dead["id"]) == [(1, 503), (2, 503), (3, 503)]
    unsent = await repo.payments.payment_by_tid(payment["tid"], MID, "test")
    assert unsent is not None and unsent.webhook_sent_at is None
    # A dead letter is kept and listed to its merchant, and nobody sends it again on their own.
    assert [d.id for d in await repo.deliveries.dead_deliveries(MID, "test", 0, 10)] == [dead["id"]]
    assert (await worker.webhooks_pass()).claimed == 0
    assert len(_received(sim)) == 3
    # Another merchant neither sees it nor can send it again.
    assert await repo.deliveries.dead_deliveries("other_mid", "test", 0, 10) == []
    assert await repo.deliveries.redeliver(dead["id"], "other_mid", "test") is False
    # Nor does the same merchant's other mode.
    assert await repo.deliveries.redeliver(dead["id"], MID, "live") is False
    assert (
        await pool.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", dead["id"])
    ) == "DEAD"

    assert await repo.deliveries.redeliver(dead["id"], MID, "test") is True
    again = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", dead["id"])
    assert again["status"] == "PENDING" and again["attempts"] == 0
    await merchant_faults(http, sim, fail_next=0)

    delivered = await _deliver_until(pool, worker, "DELIVERED")
    assert delivered["id"] == dead["id"] and delivered["attempts"] == 1
    assert (
        await repo.deliveries.redeliver(dead["id"], MID, "test") is False
    )  # only a DEAD delivery can be
    assert await repo.deliveries.dead_deliveries(MID, "test", 0, 10) == []
    sent = await repo.payments.payment_by_tid(payment["tid"], MID, "test")
    assert sent is not None
    assert sent.webhook_sent_at is not None and sent.webhook_response_code == 200
    hooks = _received(sim)
    assert [h["status"] for h in hooks] == [503, 503, 503, 200]
    assert {_header(h, "webhook-id") for h in hooks} == {dead["event_id"]}


async def test_webhook_claim_takes_at_most_the_batch_size(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    worker = await _settled_many(pool, repo, settings, sim, http, 6, webhook_batch_size=2)
    first = await worker.webhooks_pass()
    assert (first.claimed, first.delivered) == (2, 2)
    assert len(_received(sim)) == 2


async def test_webhook_payloads_have_the_seed_shape(
    client: TestClient[web.Request, web.Application],
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    worker = Worker(settings, repo, http, owner="hooks")
    tids = []
    for rate, order_id in ((1.0, "ORD_456"), (0.0, "ORD_457")):
        await acquirer_config(http, sim, success_rate=rate)
        resp = await client.post("/api/payment", json={**SEED_REQUEST, "orderId": order_id})
        assert resp.status == 202
        tids.append((await resp.json())["transactionId"])
        assert (await worker.payments_pass()).settled == 1
        assert (await worker.webhooks_pass()).delivered == 1
    hooks = await sim.wait_for_webhooks(2, path="/api/webhook/pg/DUMMY")
    by_tid = {h["body"]["transactionId"]: h for h in hooks}
    approved, declined = by_tid[tids[0]], by_tid[tids[1]]
    rows = {r["tid"]: r for r in await pool.fetch("SELECT * FROM payment_processes")}

    ok = approved["body"]
    assert list(ok) == [
        "status",
        "code",
        "transactionId",
        "approvalNo",
        "amount",
        "currency",
        "echo",
        "message",
    ]
    assert ok == {
        "status": "SUCCESS",
        "code": "0000",
        "transactionId": tids[0],
        "approvalNo": rows[tids[0]]["approval_no"],
        "amount": 10000,
        "currency": "KRW",
        "echo": SEED_REQUEST["echo"],
        "message": "Payment approved successfully",
    }
    assert re.fullmatch(r"AP\d+", ok["approvalNo"])
    [charge] = await ledger(http, sim)
    assert charge["reference"] == tids[0] and charge["approvalNo"] == ok["approvalNo"]

    ko = declined["body"]
    assert "approvalNo" not in ko
    assert list(ko) == ["status", "code", "transactionId", "amount", "currency", "echo", "message"]
    reason = rows[tids[1]]["fail_reason"]
    assert reason in DECLINE_REASONS
    assert ko == {
        "status": "FAILED",
        "code": "E001",
        "transactionId": tids[1],
        "amount": 10000,
        "currency": "KRW",
        "echo": SEED_REQUEST["echo"],
        "message": f"Payment failed: {reason}",
    }

    for hook, tid, suffix in ((approved, tids[0], "success"), (declined, tids[1], "failed")):
        assert hook["path"] == "/api/webhook/pg/DUMMY"
        assert _header(hook, "content-type") == "application/json"
        assert _header(hook, "webhook-id") == f"evt_{rows[tid]['public_id']}_{suffix}"
        assert (_header(hook, "webhook-timestamp") or "").isdigit()


async def test_one_pass_records_every_success_together_and_each_failure_alone(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    worker = await _settled_many(pool, repo, settings, sim, http, 8, webhook_batch_size=8)
    await merchant_faults(http, sim, fail_next=3, status=503)

    first = await worker.webhooks_pass()
    assert (first.claimed, first.delivered) == (8, 5)
    assert first.retry_in is not None and first.retry_in > 0
    rows = await pool.fetch("SELECT * FROM webhook_deliveries ORDER BY id")
    delivered = [r for r in rows if r["status"] == "DELIVERED"]
    retrying = [r for r in rows if r["status"] == "PENDING"]
    assert (len(delivered), len(retrying)) == (5, 3)
    for r in delivered:
        assert await _attempts(pool, r["id"]) == [(1, 200)]
        assert r["lease_owner"] is None and r["delivered_at"] is not None
    for r in retrying:
        assert await _attempts(pool, r["id"]) == [(1, 503)]
        assert r["lease_owner"] is None and r["next_attempt_at"] > r["updated_at"] - _SLACK
    # The lookup reads each payment's webhook status from its deliveries (migration 0022).
    tids = await pool.fetch("SELECT id, tid FROM payment_processes")
    looked = {r["id"]: await repo.payments.payment_by_tid(r["tid"], MID, "test") for r in tids}
    marked = {i for i, p in looked.items() if p is not None and p.webhook_sent_at is not None}
    assert marked == {r["payment_id"] for r in delivered}
    codes = {i: p.webhook_response_code for i, p in looked.items() if p is not None}
    assert all(codes[i] == (200 if i in marked else 503) for i in codes)


async def test_a_success_is_not_recorded_by_a_worker_that_lost_the_lease(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    await insert_payments(pool, sim, 3)
    await pool.execute("UPDATE payment_processes SET status = 'SUCCESS', approval_no = 'A1'")
    await pool.execute(
        "INSERT INTO webhook_deliveries (payment_id, event_id, event_status, url)"
        " SELECT id, 'evt_' || id, 'SUCCESS', 'http://x/' FROM payment_processes"
    )
    claimed = await repo.deliveries.claim_deliveries("w1", 10, 30)
    assert len(claimed) == 3
    # Another worker took the first one over (its lease had expired and was reaped).
    await pool.execute(
        "UPDATE webhook_deliveries SET lease_owner = 'w2' WHERE id = $1", claimed[0].id
    )
    now = datetime.now(UTC)
    recorded = await repo.deliveries.deliveries_succeeded(
        "w1", [Delivered(d.id, 204, now, d.attempts) for d in claimed]
    )
    assert recorded == {d.id for d in claimed[1:]}
    statuses = dict(await pool.fetch("SELECT id, status FROM webhook_deliveries"))
    assert statuses == {
        claimed[0].id: "SENDING",
        claimed[1].id: "DELIVERED",
        claimed[2].id: "DELIVERED",
    }
    attempts = await pool.fetch("SELECT delivery_id, response_code FROM webhook_attempts")
    assert sorted(tuple(a) for a in attempts) == sorted((d.id, 204) for d in claimed[1:])
    assert await repo.deliveries.deliveries_succeeded("w1", []) == set()
