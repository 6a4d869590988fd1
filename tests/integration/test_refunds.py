"""Cancel and refunds: compare-and-set under races, totals never above the capture, webhooks."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST
from tests.integration.engine_support import tuned
from tests.waiting import wait_until

_orders = itertools.count()


async def _config(http: aiohttp.ClientSession, sim: SimulatorHandle, **body: Any) -> None:
    async with http.post(f"{sim.url}/acquirer/admin/config", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        return await resp.json()


async def _pay(client: TestClient, amount: int = 10_000) -> str:
    body = SEED_REQUEST | {"orderId": f"ORD_R{next(_orders)}", "amount": amount}
    resp = await client.post("/api/payment", json=body)
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["transactionId"])


async def _captured(client: TestClient, worker: Worker, amount: int = 10_000) -> str:
    tid = await _pay(client, amount)
    assert (await worker.payments_pass()).settled == 1
    assert (await (await client.get(f"/api/payment/transaction/{tid}")).json())["status"] == (
        "SUCCESS"
    )
    return tid


async def _refund(client: TestClient, tid: str, amount: int, key: str) -> aiohttp.ClientResponse:
    return await client.post(
        f"/api/payments/{tid}/refunds", json={"amount": amount}, headers={"Idempotency-Key": key}
    )


async def _row(pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row is not None
    return row


def _fast(settings: Settings, **changes: Any) -> Settings:
    return tuned(
        settings,
        acquirer_timeout_seconds=0.3,
        acquirer_max_attempts=1,
        acquirer_requeue_seconds=0.01,
        acquirer_requeue_max_seconds=0.02,
        **changes,
    )


async def test_cancel_a_pending_payment_and_the_poller_never_takes_it(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
) -> None:
    tid = await _pay(client)
    resp = await client.post(f"/api/payments/{tid}/cancel")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "CANCELED"
    assert (await Worker(settings, repo, http, owner="w").payments_pass()).claimed == 0
    assert (await _get(http, f"{sim.url}/acquirer/stats"))["authorizeCalls"] == 0
    again = await client.post(f"/api/payments/{tid}/cancel")
    assert again.status == 409
    assert (await again.json())["currentStatus"] == "CANCELED"


async def test_cancel_after_processing_started_is_409_with_the_state(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    tid = await _pay(client)
    await repo.payments.claim_pending("holder", 1, 30)
    resp = await client.post(f"/api/payments/{tid}/cancel")
    assert resp.status == 409
    body = await resp.json()
    assert body["currentStatus"] == "PROCESSING" and body["field"] == "status"
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert (await _row(pool, tid))["status"] == "PROCESSING"

    done = await _captured(client, Worker(settings, repo, http, owner="w"))
    resp = await client.post(f"/api/payments/{done}/cancel")
    assert resp.status == 409 and (await resp.json())["currentStatus"] == "SUCCESS"
    assert (await client.post("/api/payments/DUMMY_20260101_00000000/cancel")).status == 404


async def test_cancel_is_refused_while_an_earlier_attempt_may_have_charged(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0, drop_after_charge_rate=1.0, fault_seed="c")
    tid = await _pay(client)
    await Worker(_fast(settings), repo, http, owner="w").payments_pass()
    row = await _row(pool, tid)
    assert row["status"] == "PENDING" and row["outcome_unknown_since"] is not None
    resp = await client.post(f"/api/payments/{tid}/cancel")
    assert resp.status == 409
    assert "unknown" in (await resp.json())["detail"]
    assert (await _row(pool, tid))["status"] == "PENDING"


async def test_cancel_racing_the_poller_each_payment_is_canceled_or_charged_never_both(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0, latency_ms=2)
    tids = [await _pay(client) for _ in range(40)]
    worker = Worker(tuned(settings, batch_size=5), repo, http, owner="racer")

    async def drain() -> None:
        while (await worker.payments_pass()).claimed:
            pass

    results = await asyncio.gather(
        drain(), *(client.post(f"/api/payments/{t}/cancel") for t in tids)
    )
    codes = Counter(r.status for r in results[1:])  # type: ignore[union-attr]
    assert set(codes) <= {200, 409}
    await drain()
    charged = {c["reference"] for c in (await _get(http, f"{sim.url}/acquirer/charges"))["charges"]}
    for tid in tids:
        status = (await _row(pool, tid))["status"]
        assert status in ("CANCELED", "SUCCESS")
        assert (status == "SUCCESS") == (tid in charged), tid
    assert sum(1 for t in tids if t in charged) == codes[409]


async def test_full_refund_settles_with_the_provider_and_reports_by_webhook(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(settings, repo, http, owner="w")
    tid = await _captured(client, worker)
    resp = await _refund(client, tid, 10_000, "full-1")
    assert resp.status == 202
    accepted = await resp.json()
    assert accepted["status"] == "REFUND_PENDING" and accepted["refundId"].startswith("RF")

    assert (await worker.refunds_pass()).settled == 1
    row = await _row(pool, tid)
    assert (row["status"], row["refunded_amount"], row["refund_reserved"]) == (
        "REFUNDED",
        10_000,
        10_000,
    )
    listed = await (await client.get(f"/api/payments/{tid}/refunds")).json()
    [refund] = listed["refunds"]
    assert refund["status"] == "REFUNDED" and refund["refundNo"].startswith("RF")
    ledger = await _get(http, f"{sim.url}/acquirer/refunds")
    assert [r["reference"] for r in ledger["refunds"]] == [accepted["refundId"]]

    while (await worker.webhooks_pass()).claimed:
        pass
    hooks = await sim.wait_for_webhooks(2, path="/api/webhook/pg/DUMMY")
    body = hooks[-1]["body"]
    assert body["status"] == "REFUNDED" and body["code"] == "0000"
    assert (body["transactionId"], body["refundId"], body["amount"], body["refundedAmount"]) == (
        tid,
        accepted["refundId"],
        10_000,
        10_000,
    )
    one = await (await client.get(f"/api/refunds/{accepted['refundId']}")).json()
    assert one["status"] == "REFUNDED"


async def test_partial_refunds_add_up_and_never_exceed_the_capture(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(settings, repo, http, owner="w")
    tid = await _captured(client, worker)
    assert (await _refund(client, tid, 3_000, "p1")).status == 202
    assert (await _refund(client, tid, 2_000, "p2")).status == 202
    assert (await worker.refunds_pass()).settled == 2
    row = await _row(pool, tid)
    assert (row["status"], row["refunded_amount"]) == ("PARTIALLY_REFUNDED", 5_000)
    shown = await (await client.get(f"/api/payment/transaction/{tid}")).json()
    assert (shown["status"], shown["refundedAmount"]) == ("PARTIALLY_REFUNDED", 5_000)
    too_much = await _refund(client, tid, 6_000, "p3")
    assert too_much.status == 409
    body = await too_much.json()
    assert body["field"] == "amount" and body["refundable"] == 5_000
    assert (await _refund(client, tid, 5_000, "p4")).status == 202
    await worker.refunds_pass()
    assert (await _row(pool, tid))["status"] == "REFUNDED"


async def test_twenty_parallel_refunds_of_ten_percent_exactly_ten_succeed(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(settings, repo, http, owner="w")
    tid = await _captured(client, worker)
    responses = await asyncio.gather(*(_refund(client, tid, 1_000, f"k{i}") for i in range(20)))
    codes = Counter(r.status for r in responses)
    assert codes == Counter({202: 10, 409: 10})
    assert await pool.fetchval("SELECT count(*) FROM refunds") == 10
    assert (await _row(pool, tid))["refund_reserved"] == 10_000
    while (await worker.refunds_pass()).claimed:
        pass
    row = await _row(pool, tid)
    assert (row["status"], row["refunded_amount"]) == ("REFUNDED", 10_000)
    assert (await _get(http, f"{sim.url}/acquirer/refunds"))["count"] == 10


async def test_refund_idempotency_key(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    tid = await _captured(client, Worker(settings, repo, http, owner="w"))
    first = await (await _refund(client, tid, 1_000, "same")).json()
    replay = await _refund(client, tid, 1_000, "same")
    assert replay.status == 200 and (await replay.json())["refundId"] == first["refundId"]
    other = await _refund(client, tid, 2_000, "same")
    assert other.status == 409 and (await other.json())["field"] == "Idempotency-Key"
    twins = await asyncio.gather(*(_refund(client, tid, 500, "twin") for _ in range(10)))
    assert sorted(r.status for r in twins) == [200] * 9 + [202]
    assert len({(await r.json())["refundId"] for r in twins}) == 1
    assert await pool.fetchval("SELECT count(*) FROM refunds") == 2
    assert (await _row(pool, tid))["refund_reserved"] == 1_500


async def test_refund_bad_input_and_wrong_states_change_nothing(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    pending = await _pay(client)
    no_key = await client.post(f"/api/payments/{pending}/refunds", json={"amount": 1})
    assert no_key.status == 422 and (await no_key.json())["field"] == "Idempotency-Key"
    bad_bodies: list[dict[str, Any]] = [
        {"amount": 0},
        {"amount": "1"},
        {"amount": 1.5},
        {},
        {"amount": 1, "reason": ""},
        {"amount": 2**70},
        {"amount": 1, "reason": "\x00"},
        # An unknown member is refused, not ignored: "reson" must not lose the reason.
        {"amount": 1, "reson": "damaged"},
    ]
    for bad in bad_bodies:
        resp = await client.post(
            f"/api/payments/{pending}/refunds", json=bad, headers={"Idempotency-Key": "x"}
        )
        assert resp.status == 422, bad
        if "reson" in bad:
            assert (await resp.json())["field"] == "reson"
    not_captured = await _refund(client, pending, 1, "pending")
    assert not_captured.status == 409
    assert (await not_captured.json())["currentStatus"] == "PENDING"
    assert (await _refund(client, "DUMMY_20260101_00000000", 1, "u")).status == 404
    assert (await client.get("/api/refunds/RF00000000000")).status == 404
    assert await pool.fetchval("SELECT count(*) FROM refunds") == 0
    assert (await _row(pool, pending))["refund_reserved"] == 0


async def test_a_refund_with_unknown_outcome_is_inquired_not_sent_twice(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(_fast(settings), repo, http, owner="w")
    tid = await _captured(client, worker)
    await _config(http, sim, drop_after_charge_rate=1.0, fault_seed="r")
    refund_id = (await (await _refund(client, tid, 4_000, "unknown")).json())["refundId"]
    await worker.refunds_pass()
    state = await pool.fetchrow("SELECT * FROM refunds WHERE public_id = $1", refund_id)
    assert state["status"] == "REFUND_PENDING" and state["outcome_unknown_since"] is not None
    await _config(http, sim, drop_after_charge_rate=0.0)

    async def refunded() -> bool:
        await worker.refunds_pass()
        return bool(await pool.fetchval("SELECT status = 'REFUNDED' FROM refunds"))

    await wait_until(refunded, timeout=5, what="refund settled after inquiry")
    ledger = await _get(http, f"{sim.url}/acquirer/refunds")
    assert ledger["count"] == 1 and ledger["calls"] == 1 and ledger["inquiries"] >= 1
    assert (await _row(pool, tid))["refunded_amount"] == 4_000


async def test_a_rejected_refund_frees_its_reservation_and_reports_failure(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    # Settled by hand with a test key: the acquirer never charged it, so it refuses the refund.
    tid = await _pay(client)
    resp = await client.post(f"/api/payment/webhook/trigger/{tid}?status=SUCCESS")
    assert resp.status == 202
    assert (await _refund(client, tid, 10_000, "rejected")).status == 202
    worker = Worker(settings, repo, http, owner="w")
    assert (await worker.refunds_pass()).settled == 1
    refund = await pool.fetchrow("SELECT * FROM refunds")
    assert (refund["status"], refund["fail_reason"]) == ("REFUND_FAILED", "NOT_CAPTURED")
    row = await _row(pool, tid)
    assert (row["status"], row["refunded_amount"], row["refund_reserved"]) == ("SUCCESS", 0, 0)
    while (await worker.webhooks_pass()).claimed:
        pass
    hooks = await sim.wait_for_webhooks(2, path="/api/webhook/pg/DUMMY")
    failed = [h["body"] for h in hooks if h["body"]["status"] == "REFUND_FAILED"]
    assert failed and failed[0]["message"] == "Refund failed: NOT_CAPTURED"
    assert failed[0]["code"] == "E002"


async def test_refund_history_is_recorded_as_events(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    await _config(http, sim, success_rate=1.0)
    worker = Worker(settings, repo, http, owner="w")
    tid = await _captured(client, worker)
    await _refund(client, tid, 10_000, "ev")
    await worker.refunds_pass()
    rows = await pool.fetch(
        "SELECT e.from_status, e.to_status, e.actor, e.refund_id IS NOT NULL AS is_refund"
        " FROM payment_events e JOIN payment_processes p ON p.id = e.payment_id"
        " WHERE p.tid = $1 ORDER BY e.id",
        tid,
    )
    steps = [(r["from_status"], r["to_status"], r["is_refund"]) for r in rows]
    assert steps == [
        (None, "PENDING", False),
        ("PENDING", "PROCESSING", False),
        ("PROCESSING", "SUCCESS", False),
        (None, "REFUND_PENDING", True),
        ("REFUND_PENDING", "REFUND_PROCESSING", True),
        ("REFUND_PROCESSING", "REFUNDED", True),
        ("SUCCESS", "REFUNDED", False),
    ]
    assert rows[0]["actor"].startswith("merchant:sk_test_")
    assert rows[-1]["actor"] == "w"
