"""Acquirer simulator over real HTTP: determinism, idempotency, concurrency, validation, admin."""

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from simulator.acquirer import DECLINE_REASONS
from simulator.app import create_app
from simulator.settings import SimulatorSettings

pytestmark = pytest.mark.asyncio

Client = TestClient[Any, Any]

NO_FAULTS = dict.fromkeys(
    ("timeout", "error", "reset", "drop_after_charge", "down", "inquiry_error"), 0
)


def settings(**overrides: Any) -> SimulatorSettings:
    """Settings independent of the caller's SIM_* environment."""
    base: dict[str, Any] = {
        "seed": "test-seed",
        "success_rate": 0.5,
        "latency_ms": 0,
        "port": 0,
        "charge_every_call": False,
    }
    return SimulatorSettings(**(base | overrides))


def payment(reference: str, amount: int = 1000) -> dict[str, Any]:
    return {
        "reference": reference,
        "amount": amount,
        "currency": "KRW",
        "orderId": "O-" + reference,
    }


async def authorize(client: Client, body: Any) -> tuple[int, Any]:
    async with client.post("/acquirer/authorize", json=body) as resp:
        return resp.status, await resp.json()


async def get_json(client: Client, path: str) -> Any:
    async with client.get(path) as resp:
        assert resp.status == 200
        return await resp.json()


async def outcomes(client: Client, refs: list[str]) -> list[tuple[str, str | None]]:
    results = []
    for ref in refs:
        status, body = await authorize(client, payment(ref))
        assert status == 200
        results.append((body["status"], body.get("reason")))
    return results


async def test_same_seed_gives_same_outcomes(aiohttp_client: AiohttpClient) -> None:
    refs = [f"R-{i}" for i in range(50)]
    first = await outcomes(await aiohttp_client(create_app(settings())), refs)
    second = await outcomes(await aiohttp_client(create_app(settings())), refs)
    assert first == second
    statuses = {status for status, _ in first}
    assert statuses == {"APPROVED", "DECLINED"}  # 50 draws at 0.5: both occur for this seed
    other = await outcomes(await aiohttp_client(create_app(settings(seed="other"))), refs)
    assert other != first


async def test_success_rate_one_approves_all(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=1.0)))
    for ref in (f"A-{i}" for i in range(50)):
        status, body = await authorize(client, payment(ref))
        assert status == 200
        assert body["status"] == "APPROVED"
        assert body["approvalNo"].startswith("AP") and body["approvalNo"][2:].isdigit()
        assert (body["reference"], body["amount"], body["currency"]) == (ref, 1000, "KRW")
    ledger = await get_json(client, "/acquirer/charges")
    assert ledger["count"] == 50 == len(ledger["charges"])


async def test_success_rate_zero_declines_all_with_known_reasons(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=0.0)))
    results = await outcomes(client, [f"D-{i}" for i in range(50)])
    assert all(status == "DECLINED" for status, _ in results)
    assert {reason for _, reason in results} <= set(DECLINE_REASONS)
    assert len({reason for _, reason in results}) > 1  # reasons vary with the hash
    assert (await get_json(client, "/acquirer/charges"))["count"] == 0
    stats = await get_json(client, "/acquirer/stats")
    assert stats == {
        "authorizeCalls": 50,
        "approved": 0,
        "declined": 50,
        "inquiries": 0,
        "injected": NO_FAULTS,
    }


async def test_repeat_reference_is_idempotent(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=1.0)))
    _, first = await authorize(client, payment("IDEM-1"))
    await asyncio.sleep(0.002)  # ensure a re-decision would get a different approvalNo
    _, second = await authorize(client, payment("IDEM-1"))
    assert second == first
    ledger = await get_json(client, "/acquirer/charges")
    assert ledger["count"] == 1
    assert ledger["charges"][0]["approvalNo"] == first["approvalNo"]
    stats = await get_json(client, "/acquirer/stats")
    assert stats == {
        "authorizeCalls": 2,
        "approved": 1,
        "declined": 0,
        "inquiries": 0,
        "injected": NO_FAULTS,
    }


async def test_concurrent_duplicates_charge_once(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=1.0, latency_ms=20)))
    results = await asyncio.gather(*(authorize(client, payment("RACE-1")) for _ in range(20)))
    assert {status for status, _ in results} == {200}
    assert len({body["approvalNo"] for _, body in results}) == 1
    assert (await get_json(client, "/acquirer/charges"))["count"] == 1
    assert (await get_json(client, "/acquirer/stats"))["authorizeCalls"] == 20


async def test_charge_every_call_charges_again_on_each_call(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=1.0, charge_every_call=True)))
    _, first = await authorize(client, payment("EVERY-1"))
    _, second = await authorize(client, payment("EVERY-1"))
    assert first["status"] == second["status"] == "APPROVED"
    ledger = await get_json(client, "/acquirer/charges")
    # Two calls, two charges, one reference: the acquirer does not deduplicate.
    assert ledger["count"] == 2
    assert [c["reference"] for c in ledger["charges"]] == ["EVERY-1", "EVERY-1"]
    # The inquiry lists both charges of the reference, and says it was approved.
    found = await get_json(client, "/acquirer/transactions/EVERY-1")
    assert found["status"] == "APPROVED" and found["reference"] == "EVERY-1"
    assert found["chargeCount"] == 2
    assert found["charges"] == ledger["charges"]
    stats = await get_json(client, "/acquirer/stats")
    assert (stats["authorizeCalls"], stats["approved"]) == (2, 2)


async def test_charge_every_call_declines_charge_nothing(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=0.0, charge_every_call=True)))
    for _ in range(2):
        assert (await authorize(client, payment("EVERY-D")))[1]["status"] == "DECLINED"
    assert (await get_json(client, "/acquirer/charges"))["count"] == 0
    found = await get_json(client, "/acquirer/transactions/EVERY-D")
    assert (found["status"], found["chargeCount"], found["charges"]) == ("DECLINED", 0, [])


async def test_charge_every_call_is_set_at_run_time(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=1.0)))
    await authorize(client, payment("RT-1"))
    async with client.post("/acquirer/admin/config", json={"charge_every_call": True}) as resp:
        assert resp.status == 200
        assert (await resp.json())["charge_every_call"] is True
    await authorize(client, payment("RT-1"))
    assert (await get_json(client, "/acquirer/charges"))["count"] == 2
    # It is the kind of acquirer, not a fault: a reset keeps it.
    async with client.post("/acquirer/admin/reset") as resp:
        assert resp.status == 200
    await authorize(client, payment("RT-2"))
    await authorize(client, payment("RT-2"))
    assert (await get_json(client, "/acquirer/charges"))["count"] == 2
    async with client.post("/acquirer/admin/config", json={"charge_every_call": False}) as resp:
        assert (await resp.json())["charge_every_call"] is False
    await authorize(client, payment("RT-2"))
    assert (await get_json(client, "/acquirer/charges"))["count"] == 2
    async with client.post("/acquirer/admin/config", json={"charge_every_call": "yes"}) as resp:
        assert resp.status == 400


async def test_different_amount_for_known_reference_conflicts(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=1.0)))
    assert (await authorize(client, payment("CONF-1", 1000)))[0] == 200
    status, body = await authorize(client, payment("CONF-1", 2000))
    assert (status, body) == (409, {"error": "reference_conflict"})
    assert (await get_json(client, "/acquirer/charges"))["count"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in payment("B").items() if k != "amount"}, "amount"),
        (payment("B") | {"amount": 0}, "amount"),
        (payment("B") | {"amount": -5}, "amount"),
        (payment("B") | {"amount": "100"}, "amount"),
        (payment("B") | {"amount": True}, "amount"),
        (payment("B") | {"reference": 7}, "reference"),
        ({k: v for k, v in payment("B").items() if k != "orderId"}, "orderId"),
        ([1, 2], "body"),
    ],
)
async def test_bad_input_is_400(aiohttp_client: AiohttpClient, body: Any, field: str) -> None:
    client = await aiohttp_client(create_app(settings()))
    status, answer = await authorize(client, body)
    assert status == 400
    assert answer["field"] == field and answer["error"]
    assert (await get_json(client, "/acquirer/charges"))["count"] == 0


async def test_malformed_json_is_400(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings()))
    async with client.post("/acquirer/authorize", data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["field"] == "body"


async def test_inquiry(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=0.0)))
    _, answer = await authorize(client, payment("INQ-1"))
    assert await get_json(client, "/acquirer/transactions/INQ-1") == answer
    async with client.get("/acquirer/transactions/NOPE") as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "not_found"}


async def test_admin_config_and_reset(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(success_rate=0.0)))
    assert (await authorize(client, payment("CFG-1")))[1]["status"] == "DECLINED"
    async with client.post("/acquirer/admin/config", json={"success_rate": 1.0}) as resp:
        assert resp.status == 200
        config = await resp.json()
        assert config["success_rate"] == 1.0
        assert (config["latency_ms"], config["seed"]) == (0, "test-seed")
    assert (await authorize(client, payment("CFG-2")))[1]["status"] == "APPROVED"
    # A stored answer is final: changing the rate does not re-decide a known reference.
    assert (await authorize(client, payment("CFG-1")))[1]["status"] == "DECLINED"
    for bad in ({"success_rate": 1.5}, {"latency_ms": -1}, {"seed": 3}, {"sucess_rate": 1}):
        async with client.post("/acquirer/admin/config", json=bad) as resp:
            assert resp.status == 400, bad
    async with client.post("/acquirer/admin/reset") as resp:
        assert resp.status == 200
    assert (await get_json(client, "/acquirer/charges"))["count"] == 0
    assert await get_json(client, "/acquirer/stats") == {
        "authorizeCalls": 0,
        "approved": 0,
        "declined": 0,
        "inquiries": 0,
        "injected": NO_FAULTS,
    }
    async with client.get("/acquirer/transactions/CFG-1") as resp:
        assert resp.status == 404


async def test_latency_is_applied(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(settings(latency_ms=100)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await authorize(client, payment("SLOW-1"))
    assert loop.time() - started >= 0.09
