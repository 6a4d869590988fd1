"""The merchant receiver checks Standard Webhooks signatures, refuses replays, and goes down."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from pytest_aiohttp import AiohttpClient
from standardwebhooks import Webhook

from simulator.app import create_app
from simulator.settings import SimulatorSettings
from simulator.signatures import DEV_WEBHOOK_SECRET
from tests.simulator import signed

Client = TestClient[Any, Any]
DUMMY = "/api/webhook/pg/DUMMY"
OTHER_A = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"  # 24 x "A"
OTHER_B = "whsec_" + "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC"  # 24 x "B"
EVENT = {"status": "SUCCESS", "transactionId": "T-1", "amount": 1000}


async def make_client(aiohttp_client: AiohttpClient, **settings: Any) -> Client:
    return await aiohttp_client(create_app(SimulatorSettings(port=0, seed="s", **settings)))


async def post(client: Client, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with client.post(DUMMY, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def last_hook(client: Client) -> Any:
    async with client.get(DUMMY) as resp:
        return (await resp.json())["webhooks"][-1]


async def admin(client: Client, what: str, body: Any) -> tuple[int, Any]:
    async with client.post(f"/api/webhook/admin/{what}", json=body) as resp:
        return resp.status, await resp.json()


async def test_signed_with_the_dev_secret_is_accepted(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    data = signed.encode(EVENT)
    assert await post(client, data, signed.headers(data)) == (200, {"received": True})
    hook = await last_hook(client)
    assert hook["status"] == 200 and hook["verified"] is True and hook["rejectReason"] is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"drop": "webhook-signature"}, "missing_signature_headers"),
        ({"drop": "webhook-id"}, "missing_signature_headers"),
        ({"drop": "webhook-timestamp"}, "missing_signature_headers"),
        ({"secret": OTHER_A}, "signature_mismatch"),
        ({"tamper": True}, "signature_mismatch"),
        ({"set": ("webhook-id", "evt_other")}, "signature_mismatch"),
        ({"set": ("webhook-timestamp", "12ab")}, "invalid_timestamp"),
        ({"set": ("webhook-signature", "v1,not base64!")}, "signature_mismatch"),
    ],
)
async def test_bad_signatures_are_refused_and_recorded(
    aiohttp_client: AiohttpClient, change: dict[str, Any], reason: str
) -> None:
    client = await make_client(aiohttp_client)
    data = signed.encode(EVENT)
    headers = signed.headers(data, change.get("secret", DEV_WEBHOOK_SECRET))
    if "drop" in change:
        del headers[change["drop"]]
    if "set" in change:
        name, value = change["set"]
        headers[name] = value
    if change.get("tamper"):
        data = data.replace(b"1000", b"9000")
    status, answer = await post(client, data, headers)
    assert status == 401 and answer == {"received": False, "error": reason}
    hook = await last_hook(client)
    assert hook["status"] == 401 and hook["verified"] is False and hook["rejectReason"] == reason


async def test_replayed_or_future_timestamps_are_refused(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    data = signed.encode(EVENT)
    now = datetime.now(UTC)
    # Correctly signed, but outside the default 300 s tolerance either way.
    old = signed.headers(data, at=now - timedelta(seconds=330))
    assert await post(client, data, old) == (401, {"received": False, "error": "timestamp_too_old"})
    ahead = signed.headers(data, at=now + timedelta(seconds=330))
    assert (await post(client, data, ahead))[0] == 401
    assert (await last_hook(client))["rejectReason"] == "timestamp_too_new"
    # Inside the tolerance it is fine.
    recent = signed.headers(data, at=now - timedelta(seconds=200))
    assert (await post(client, data, recent))[0] == 200


async def test_tolerance_is_a_setting(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client, webhook_tolerance_seconds=10)
    data = signed.encode(EVENT)
    minute_old = signed.headers(data, at=datetime.now(UTC) - timedelta(seconds=60))
    assert (await post(client, data, minute_old))[0] == 401
    assert (await last_hook(client))["rejectReason"] == "timestamp_too_old"


async def test_configured_secret_replaces_the_default(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client, webhook_secret=OTHER_A)
    data = signed.encode(EVENT)
    assert (await post(client, data, signed.headers(data, OTHER_A)))[0] == 200
    assert (await post(client, data, signed.headers(data)))[0] == 401


def test_secret_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIM_WEBHOOK_SECRET", raising=False)
    for bad in ("aGVsbG8=", "whsec_", "whsec_not base64!", "whsec_aGVsbG8"):
        with pytest.raises(ValidationError):
            SimulatorSettings(webhook_secret=bad)
    assert SimulatorSettings().webhook_secret == DEV_WEBHOOK_SECRET


async def test_admin_sets_the_accepted_secrets(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    assert await admin(client, "secrets", {"secrets": [OTHER_A, OTHER_B]}) == (200, {"count": 2})
    data = signed.encode(EVENT)
    assert (await post(client, data, signed.headers(data, OTHER_A)))[0] == 200
    assert (await post(client, data, signed.headers(data, OTHER_B)))[0] == 200
    assert (await post(client, data, signed.headers(data)))[0] == 401
    for bad in (
        {"secrets": []},
        {"secrets": ["nope"]},
        {"secrets": ["whsec_%%%"]},
        {"secrets": OTHER_A},
        {"secrets": [OTHER_A], "more": 1},
    ):
        assert (await admin(client, "secrets", bad))[0] == 400, bad
    # A refused update changes nothing.
    assert (await post(client, data, signed.headers(data, OTHER_B)))[0] == 200


async def test_one_matching_v1_signature_is_enough(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    data = signed.encode(EVENT)
    headers = signed.headers(data)
    good = headers["webhook-signature"]
    wrong = signed.headers(data, OTHER_A)["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} v1a,abc {good}"
    assert (await post(client, data, headers))[0] == 200
    # The right signature under another version tag does not count.
    headers["webhook-signature"] = f"{wrong} v2,{good.partition(',')[2]}"
    assert (await post(client, data, headers))[0] == 401


async def test_rejections_do_not_use_up_fail_next(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    await admin(client, "faults", {"fail_next": 1, "status": 500})
    data = signed.encode(EVENT)
    assert (await post(client, data, signed.headers(data, OTHER_A)))[0] == 401
    assert (await post(client, data, signed.headers(data)))[0] == 500
    assert (await post(client, data, signed.headers(data)))[0] == 200


async def test_down_for_a_while(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    assert (await admin(client, "faults", {"down_for_ms": -1}))[0] == 400
    status, script = await admin(client, "faults", {"down_for_ms": 60_000, "fail_next": 1})
    assert status == 200 and 59_000 < script["down_for_ms"] <= 60_000
    data = signed.encode(EVENT)
    for _ in range(3):
        assert await post(client, data, signed.headers(data)) == (
            503,
            {"received": False, "error": "down"},
        )
    hook = await last_hook(client)
    assert hook["status"] == 503 and hook["verified"] is True
    # 0 ends the outage; the scripted failure is still there, untouched by the outage.
    assert (await admin(client, "faults", {"down_for_ms": 0}))[1]["down_for_ms"] == 0
    assert await post(client, data, signed.headers(data)) == (
        503,
        {"received": False, "error": "scripted_fault"},
    )
    assert (await post(client, data, signed.headers(data)))[0] == 200


async def test_outage_ends_by_itself(aiohttp_client: AiohttpClient) -> None:
    client = await make_client(aiohttp_client)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await admin(client, "faults", {"down_for_ms": 300})
    data = signed.encode(EVENT)
    statuses = []
    deadline = started + 5
    while not statuses or statuses[-1] != 200:
        assert loop.time() < deadline, statuses
        statuses.append((await post(client, data, signed.headers(data)))[0])
        await asyncio.sleep(0.02)
    assert statuses[0] == 503 and set(statuses[:-1]) == {503}
    assert loop.time() - started >= 0.3


def test_standardwebhooks_accepts_what_the_helper_signs() -> None:
    # The helper these tests post with is the third-party library's own signing.
    data = signed.encode(EVENT)
    headers = signed.headers(data, OTHER_B)
    assert Webhook(OTHER_B).verify(data, headers) == EVENT
