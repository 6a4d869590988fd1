"""The seed's flow in one process: intake -> one engine pass -> webhook -> lookup."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.store.repository import Repository
from engine.webhooks import signing
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST


async def test_seed_request_settles_and_reports(
    client: TestClient,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    resp = await client.post("/api/payment", json=SEED_REQUEST)
    assert resp.status == 202
    ack = await resp.json()
    assert ack["status"] == "PENDING" and ack["code"] == "ACK_OK"
    assert ack["echo"] == SEED_REQUEST["echo"]
    tid = ack["transactionId"]

    worker = Worker(settings, repo, http, owner="test-worker")
    assert (await worker.payments_pass()).settled == 1
    assert (await worker.webhooks_pass()).delivered == 1

    [hook] = await sim.wait_for_webhooks(1, path="/api/webhook/pg/DUMMY")
    body = hook["body"]
    assert body["transactionId"] == tid
    assert body["echo"] == SEED_REQUEST["echo"]
    looked = await (await client.get(f"/api/payment/transaction/{tid}")).json()
    assert looked["status"] == body["status"]
    if body["status"] == "SUCCESS":
        assert body["code"] == "0000" and body["approvalNo"].startswith("AP")
        assert looked["approvalNo"] == body["approvalNo"]
    else:
        assert body["code"] == "E001" and body["message"].startswith("Payment failed: ")
    assert looked["webhookSentAt"] is not None and looked["webhookResponseCode"] == 200


async def test_a_payment_without_webhook_url_goes_to_the_merchants_endpoint(
    client: TestClient, repo: Repository, pool: asyncpg.Pool, settings: Settings
) -> None:
    async def url_of(order_id: str, **extra: str) -> str:
        resp = await client.post("/api/payment", json=SEED_REQUEST | {"orderId": order_id} | extra)
        assert resp.status == 202
        tid = (await resp.json())["transactionId"]
        return str(
            await pool.fetchval("SELECT webhook_url FROM payment_processes WHERE tid = $1", tid)
        )

    assert await url_of("ORD_A") == str(settings.default_webhook_url)
    await repo.endpoints.add_endpoint(
        MID, "test", "https://shop.example/hooks", signing.new_secret()
    )
    # Neither another merchant's endpoint nor the merchant's own of the other mode is used.
    await repo.endpoints.add_endpoint(
        "someone_else", "test", "https://other.example/hooks", signing.new_secret()
    )
    await repo.endpoints.add_endpoint(
        MID, "live", "https://live.example/hooks", signing.new_secret()
    )
    assert await url_of("ORD_B") == "https://shop.example/hooks"
    # A url named per payment must be one of the merchant's endpoints (of this mode).
    for url in (
        "https://named.example/x",
        "https://other.example/hooks",
        "https://live.example/hooks",
    ):
        refused = await client.post(
            "/api/payment", json=SEED_REQUEST | {"orderId": "ORD_C", "webhookUrl": url}
        )
        assert refused.status == 422 and (await refused.json())["field"] == "webhookUrl"
    await repo.endpoints.add_endpoint(MID, "test", "https://named.example/x", signing.new_secret())
    assert await url_of("ORD_C", webhookUrl="https://named.example/x") == "https://named.example/x"
    # A replay still matches: the digest covers what was asked for, not what it resolved to.
    replay = await client.post("/api/payment", json=SEED_REQUEST | {"orderId": "ORD_A"})
    assert replay.status == 200
