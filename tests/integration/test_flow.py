"""The seed's flow in one process: intake -> one engine pass -> webhook -> lookup."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.repository import Repository
from engine.worker import Worker
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST


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
