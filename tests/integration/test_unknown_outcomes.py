"""Unknown outcomes: a call that may have charged is resolved by inquiry, never failed or resent.

Faults are injected by the simulator's acquirer over real HTTP: a timeout after the charge,
a 5xx, a reset, an approval whose answer is dropped, an outage, and a refusal (401).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from config.settings import Settings
from engine.providers.protocol import registry_key
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.integration.engine_support import insert_payments, tuned
from tests.waiting import wait_until


async def _config(http: aiohttp.ClientSession, sim: SimulatorHandle, **body: Any) -> None:
    async with http.post(f"{sim.url}/acquirer/admin/config", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        return await resp.json()


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


async def _settle_with(worker: Worker, pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    async def final() -> asyncpg.Record | None:
        await worker.payments_pass()
        row = await _row(pool, tid)
        return row if row["status"] in ("SUCCESS", "FAILED") else None

    row = await wait_until(final, timeout=5, what=f"{tid} final")
    assert isinstance(row, asyncpg.Record)
    return row


async def test_timeout_after_charge_is_resolved_by_inquiry_not_a_second_charge(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(
        http,
        sim,
        success_rate=1.0,
        timeout_rate=1.0,
        hang_ms=2000,
        timeout_after_charge=True,
        fault_seed="t",
    )
    [tid] = await insert_payments(pool, sim, 1)
    worker = Worker(_fast(settings), repo, http, owner="w")

    result = await worker.payments_pass()
    assert (result.claimed, result.settled) == (1, 0)
    row = await _row(pool, tid)
    # The charge happened but the answer was lost: unknown, never FAILED.
    assert row["status"] == "PENDING"
    assert row["outcome_unknown_since"] is not None
    assert row["lease_owner"] is None
    ledger = await _get(http, f"{sim.url}/acquirer/charges")
    assert [c["reference"] for c in ledger["charges"]] == [tid]

    await _config(http, sim, timeout_rate=0.0)
    row = await _settle_with(worker, pool, tid)
    assert row["status"] == "SUCCESS"
    assert row["approval_no"] == ledger["charges"][0]["approvalNo"]
    stats = await _get(http, f"{sim.url}/acquirer/stats")
    assert stats["authorizeCalls"] == 1, "the charge was sent again instead of inquired"
    assert stats["inquiries"] >= 1
    assert (await _get(http, f"{sim.url}/acquirer/charges"))["count"] == 1


async def test_approve_then_drop_settles_success_from_the_inquiry(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0, drop_after_charge_rate=1.0, fault_seed="t")
    [tid] = await insert_payments(pool, sim, 1)
    worker = Worker(_fast(settings), repo, http, owner="w")
    await worker.payments_pass()
    assert (await _row(pool, tid))["outcome_unknown_since"] is not None
    await _config(http, sim, drop_after_charge_rate=0.0)
    row = await _settle_with(worker, pool, tid)
    assert row["status"] == "SUCCESS"
    stats = await _get(http, f"{sim.url}/acquirer/stats")
    assert stats["authorizeCalls"] == 1
    assert stats["injected"]["drop_after_charge"] == 1


async def test_5xx_and_reset_without_charge_are_sent_again_only_after_inquiry_finds_nothing(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0, error_rate=1.0, fault_seed="t")
    [tid_error] = await insert_payments(pool, sim, 1)
    worker = Worker(_fast(settings), repo, http, owner="w")
    await worker.payments_pass()
    await _config(http, sim, error_rate=0.0, reset_rate=1.0)
    [tid_reset] = await insert_payments(pool, sim, 1, first=1)
    await worker.payments_pass()
    for tid in (tid_error, tid_reset):
        row = await _row(pool, tid)
        assert row["status"] == "PENDING" and row["outcome_unknown_since"] is not None
    assert (await _get(http, f"{sim.url}/acquirer/charges"))["count"] == 0

    await _config(http, sim, reset_rate=0.0)
    for tid in (tid_error, tid_reset):
        assert (await _settle_with(worker, pool, tid))["status"] == "SUCCESS"
    charges = (await _get(http, f"{sim.url}/acquirer/charges"))["charges"]
    assert sorted(c["reference"] for c in charges) == sorted([tid_error, tid_reset])
    stats = await _get(http, f"{sim.url}/acquirer/stats")
    # Each: one failed authorize, one inquiry (404), one authorize again.
    assert stats["inquiries"] >= 2


async def test_a_decline_is_final_at_once(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=0.0)
    [tid] = await insert_payments(pool, sim, 1)
    result = await Worker(_fast(settings), repo, http, owner="w").payments_pass()
    assert result.settled == 1
    row = await _row(pool, tid)
    assert row["status"] == "FAILED" and row["outcome_unknown_since"] is None
    assert row["fail_reason"] in (
        "INSUFFICIENT_BALANCE",
        "INVALID_CARD",
        "EXPIRED_CARD",
        "LIMIT_EXCEEDED",
        "SYSTEM_ERROR",
    )


async def test_unknown_past_the_window_is_unresolved_listed_and_later_resolved(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    client: Any,
) -> None:
    await _config(http, sim, success_rate=1.0, drop_after_charge_rate=1.0, fault_seed="t")
    [tid] = await insert_payments(pool, sim, 1)
    worker = Worker(_fast(settings, unresolved_after_seconds=0.2), repo, http, owner="w")
    await worker.payments_pass()
    await _config(http, sim, drop_after_charge_rate=0.0, down_for_ms=60_000)

    async def unresolved() -> bool:
        await worker.payments_pass()
        return bool((await _row(pool, tid))["status"] == "UNRESOLVED")

    await wait_until(unresolved, timeout=5, what="payment UNRESOLVED after the window")
    row = await _row(pool, tid)
    assert row["unresolved_reason"] == "PROVIDER_HTTP_503"
    listed = await (await client.get("/api/payment/unresolved")).json()
    assert [p["tid"] for p in listed["payments"]] == [tid]
    assert listed["payments"][0]["reason"] == row["unresolved_reason"]
    # Never silently failed: the charge exists, and once the acquirer answers it is SUCCESS.
    await _config(http, sim, down_for_ms=0)
    row = await _settle_with(worker, pool, tid)
    assert row["status"] == "SUCCESS"
    assert (await (await client.get("/api/payment/unresolved")).json())["payments"] == []


async def test_a_refusal_is_flagged_not_retried(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    aiohttp_server: Any,
    client: Any,
) -> None:
    calls = []

    async def refuse(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"error": "bad credentials"}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = await aiohttp_server(app)
    [tid] = await insert_payments(pool, sim, 1)
    worker = Worker(
        _fast(settings, acquirer_url=f"http://127.0.0.1:{server.port}/acquirer"),
        repo,
        http,
        owner="w",
    )
    await worker.payments_pass()
    row = await _row(pool, tid)
    assert row["status"] == "UNRESOLVED"
    # A code, not the acquirer's body ({"error": "bad credentials"}), which only the log gets.
    assert row["unresolved_reason"] == "PROVIDER_HTTP_401"
    assert row["next_attempt_at"].year > 9000  # 'infinity': waits for a person
    assert (await worker.payments_pass()).claimed == 0
    assert calls == ["/acquirer/authorize"]
    # Not by the manual trigger: the acquirer may have charged, so it waits for a person who
    # asks the acquirer (the merchant's key cannot write an outcome over an unknown one).
    resp = await client.post(f"/api/payment/webhook/trigger/{tid}?status=FAILED")
    assert resp.status == 409
    assert (await resp.json())["currentStatus"] == "UNRESOLVED"
    assert (await _row(pool, tid))["status"] == "UNRESOLVED"


async def test_a_reaped_payment_is_inquired_before_it_is_charged_again(
    settings: Settings,
    repo: Repository,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await _config(http, sim, success_rate=1.0)
    [tid] = await insert_payments(pool, sim, 1)
    [held] = await repo.payments.claim_pending("dead-worker", 1, 0.01)
    # The dead worker's call reached the acquirer; its answer was never written.
    dead = Worker(settings, repo, http, owner="dead-worker")
    charged = await dead.providers[registry_key("test", "card")].authorize(held)

    async def reaped() -> bool:
        from engine.payments import claim

        return await claim.reap(repo) == 1

    await wait_until(reaped, timeout=5, what="lease reaped")
    assert (await _row(pool, tid))["outcome_unknown_since"] is not None
    row = await _settle_with(Worker(_fast(settings), repo, http, owner="w"), pool, tid)
    assert row["approval_no"] == charged.approval_no
    stats = await _get(http, f"{sim.url}/acquirer/stats")
    assert stats["authorizeCalls"] == 1 and stats["inquiries"] == 1
