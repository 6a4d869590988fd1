"""Merchant webhook receiver over real HTTP, plus the real-socket server helper."""

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from simulator.app import create_app
from simulator.server import running
from simulator.settings import SimulatorSettings
from tests.simulator import signed

pytestmark = pytest.mark.asyncio

Client = TestClient[Any, Any]
DUMMY = "/api/webhook/pg/DUMMY"


async def make_client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(SimulatorSettings(port=0, seed="s")))


async def get_json(client: Client, path: str) -> Any:
    async with client.get(path) as resp:
        assert resp.status == 200
        return await resp.json()


async def post_webhook(client: Client, path: str, body: Any) -> int:
    data = signed.encode(body)
    async with client.post(path, data=data, headers=signed.headers(data)) as resp:
        return resp.status


async def set_faults(client: Client, script: dict[str, Any]) -> tuple[int, Any]:
    async with client.post("/api/webhook/admin/faults", json=script) as resp:
        return resp.status, await resp.json()


async def test_webhook_is_recorded(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    event = {"transactionId": "T-1", "status": "APPROVED", "amount": 1000}
    data = signed.encode(event)
    headers = {**signed.headers(data, msg_id="evt_1"), "X-Extra": "abc"}
    async with client.post(DUMMY, data=data, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {"received": True}
    listing = await get_json(client, DUMMY)
    assert listing["count"] == 1
    hook = listing["webhooks"][0]
    assert hook["path"] == DUMMY and hook["status"] == 200
    assert hook["body"] == event and json.loads(hook["raw"]) == event
    assert hook["headers"]["X-Extra"] == "abc" and hook["headers"]["webhook-id"] == "evt_1"
    assert hook["verified"] is True and hook["rejectReason"] is None
    assert hook["receivedAt"].endswith("+00:00")


async def test_non_json_body_recorded_with_null_body(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    async with client.post(
        DUMMY, data=b"plain text", headers=signed.headers(b"plain text")
    ) as resp:
        assert resp.status == 200
    hook = (await get_json(client, DUMMY))["webhooks"][0]
    assert hook["body"] is None and hook["raw"] == "plain text"


async def test_fail_next_then_success(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    status, script = await set_faults(client, {"fail_next": 2, "status": 503})
    assert status == 200
    assert script == {"fail_next": 2, "status": 503, "delay_ms": 0, "down_for_ms": 0}
    statuses = [
        await post_webhook(client, DUMMY, {"transactionId": "T-9", "n": n}) for n in range(3)
    ]
    assert statuses == [503, 503, 200]
    listing = await get_json(client, DUMMY)
    assert [w["status"] for w in listing["webhooks"]] == [503, 503, 200]
    assert [w["body"]["n"] for w in listing["webhooks"]] == [0, 1, 2]


async def test_fault_script_validation_and_clearing(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    for bad in ({"fail_next": -1}, {"status": 200}, {"delay_ms": "5"}, {"fail": 1}):
        assert (await set_faults(client, bad))[0] == 400, bad
    await set_faults(client, {"fail_next": 5, "status": 500, "delay_ms": 50})
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await post_webhook(client, DUMMY, {}) == 500
    assert loop.time() - started >= 0.045
    status, script = await set_faults(client, {"fail_next": 0, "delay_ms": 0})
    assert status == 200
    assert script == {"fail_next": 0, "status": 503, "delay_ms": 0, "down_for_ms": 0}
    assert await post_webhook(client, DUMMY, {}) == 200


async def test_listing_per_path_all_and_clear(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    await post_webhook(client, DUMMY, {"transactionId": "A"})
    await post_webhook(client, "/api/webhook/pg/OTHER", {"transactionId": "B"})
    await post_webhook(client, DUMMY, {"transactionId": "C"})
    dummy = await get_json(client, DUMMY)
    assert [w["body"]["transactionId"] for w in dummy["webhooks"]] == ["A", "C"]
    other = await get_json(client, "/api/webhook/pg/OTHER")
    assert other["count"] == 1
    everything = await get_json(client, "/api/webhook/received")
    assert everything["count"] == 3
    async with client.delete("/api/webhook/received") as resp:
        assert resp.status == 200
    assert (await get_json(client, "/api/webhook/received"))["count"] == 0
    assert (await get_json(client, DUMMY))["count"] == 0


async def test_running_serves_real_socket() -> None:
    async with running(SimulatorSettings(port=0, seed="s", success_rate=1.0)) as sim:
        assert sim.port > 0 and sim.url == f"http://127.0.0.1:{sim.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{sim.url}/health") as resp:
                assert resp.status == 200
                assert await resp.json() == {"ok": True}
            # Deliver in the background, as the engine would, and wait on the condition.
            data = signed.encode({"transactionId": "X"})
            task = asyncio.create_task(
                session.post(f"{sim.url}{DUMMY}", data=data, headers=signed.headers(data))
            )
            hooks = await sim.wait_for_webhooks(1, path=DUMMY, timeout=5.0)
            assert hooks[0]["body"] == {"transactionId": "X"}
            (await task).release()
        with pytest.raises(TimeoutError):
            await sim.wait_for_webhooks(2, timeout=0.05)
