"""Webhook endpoints belong to one merchant (issue 10, part A).

The attack that worked before: merchant B named merchant A's registered url as a payment's
webhookUrl, and the delivery reached A signed with A's own secret (the secret was chosen by
url alone); and every merchant made by the CLI was handed the same default secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError
from pytest_aiohttp import AiohttpClient
from standardwebhooks import Webhook, WebhookVerificationError

from api.app import create_app
from config.settings import Settings
from engine.models import Status
from engine.store.repository import Repository
from engine.webhooks import signing
from engine.worker.process import Worker
from simulator.merchant import MERCHANT_STATE
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.integration.engine_support import by_hand, tuned
from tests.merchant_cli import create_merchant
from tests.waiting import wait_until

Client = TestClient[Any, Any]
ENDPOINTS = "/api/webhook-endpoints"
OTHER = "shop_b"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def other(repo: Repository, settings: Settings, api_key: str) -> dict[str, str]:
    """A test key of another merchant."""
    await repo.merchants.create_merchant(OTHER, "Shop B")
    return bearer((await repo.merchants.issue_key(OTHER, "test", settings.api_key_secret)).key)


def hook_url(sim: SimulatorHandle, name: str) -> str:
    """A path on the simulator's merchant receiver (allow-listed in the test settings)."""
    return f"{sim.url}/api/webhook/pg/{name}"


async def register(
    client: Client, url: str, headers: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    resp = await client.post(ENDPOINTS, json={"url": url, **extra}, headers=headers)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def pay(
    client: Client, order_id: str, headers: dict[str, str] | None = None, **fields: Any
) -> str:
    body = {**SEED_REQUEST, "orderId": order_id, "echo": {"orderNumber": order_id}, **fields}
    resp = await client.post("/api/payment", json=body, headers=headers)
    assert resp.status == 202, await resp.text()
    tid: str = (await resp.json())["transactionId"]
    return tid


async def problem(
    resp: aiohttp.ClientResponse | Any, status: int, field: str | None = None
) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    if field is not None:
        assert body["field"] == field, body
    return body


async def rows(pool: asyncpg.Pool) -> tuple[Any, ...]:
    """Everything a refused request must not have written."""
    return tuple(
        [
            await pool.fetch(f"SELECT * FROM {table} ORDER BY id")
            for table in (
                "payment_processes",
                "webhook_endpoints",
                "webhook_endpoint_secrets",
                "webhook_deliveries",
            )
        ]
    )


def received(sim: SimulatorHandle) -> list[dict[str, Any]]:
    return list(sim.app[MERCHANT_STATE].received)


async def accept_only(http: aiohttp.ClientSession, sim: SimulatorHandle, *secrets: str) -> None:
    """The merchant receiver accepts signatures under these secrets only."""
    async with http.post(
        f"{sim.url}/api/webhook/admin/secrets", json={"secrets": list(secrets)}
    ) as resp:
        assert resp.status == 200, await resp.text()


def verifies(hook: dict[str, Any], secret: str) -> bool:
    """The standardwebhooks library's verdict on what the receiver got."""
    try:
        Webhook(secret).verify(hook["raw"].encode(), hook["headers"])
    except WebhookVerificationError:
        return False
    return True


async def send_all(worker: Worker, pool: asyncpg.Pool) -> None:
    """Webhook passes until no delivery is waiting."""

    async def done() -> bool:
        await worker.webhooks_pass()
        return not await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status IN ('PENDING', 'SENDING')"
        )

    await wait_until(done, what="no delivery waiting")


# --- the attack ------------------------------------------------------------------------------


async def test_a_merchant_cannot_name_another_merchants_endpoint(
    client: Client, pool: asyncpg.Pool, sim: SimulatorHandle, other: dict[str, str]
) -> None:
    a_url = hook_url(sim, "SHOP_A")
    await register(client, a_url)
    before = await rows(pool)
    body = {
        **SEED_REQUEST,
        "orderId": "ORD_B",
        "echo": {"orderNumber": "ORD_A_1"},
        "webhookUrl": a_url,
    }
    refused = await problem(
        await client.post("/api/payment", json=body, headers=other), 422, "webhookUrl"
    )
    assert "registered webhook endpoints" in refused["detail"]
    assert await rows(pool) == before


async def test_deliveries_verify_only_under_the_paying_merchants_secret(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    other: dict[str, str],
) -> None:
    url = hook_url(sim, "SHARED")
    a = await register(client, url)
    # B registers the very same url: its own endpoint, with its own secret.
    b = await register(client, url, headers=other)
    assert a["id"] != b["id"] and a["secret"] != b["secret"]
    a_tid = await pay(client, "ORD_A", webhookUrl=url)
    b_tid = await pay(client, "ORD_B", other, webhookUrl=url)
    for tid, mid in ((a_tid, MID), (b_tid, OTHER)):
        assert await by_hand(repo, tid, Status.SUCCESS, mid=mid) == "settled"
    # A's receiver knows A's secret only.
    await accept_only(http, sim, a["secret"])
    await Worker(settings, repo, http, owner="w").webhooks_pass()

    by_tid = {h["body"]["transactionId"]: h for h in received(sim)}
    assert by_tid[a_tid]["verified"] is True and verifies(by_tid[a_tid], a["secret"])
    b_hook = by_tid[b_tid]
    # B's webhook reached the url but A's secret does not verify it: A's receiver refuses it.
    assert b_hook["verified"] is False and b_hook["rejectReason"] == "signature_mismatch"
    assert verifies(b_hook, b["secret"]) and not verifies(b_hook, a["secret"])
    assert not verifies(by_tid[a_tid], b["secret"])


async def test_no_merchant_is_handed_a_shared_secret(
    pool: asyncpg.Pool, database_url: str, settings: Settings, sim: SimulatorHandle
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
    env |= {"DATABASE_URL": database_url, "ENGINE_API_KEY_SECRET": settings.api_key_secret}
    plain = await create_merchant(env, mid="cli_plain", name="No endpoint")
    # No endpoint, no secret: its webhooks go to the operator's receiver.
    assert "webhookSecret" not in plain and "webhookEndpoint" not in plain
    assert settings.webhook_secret not in json.dumps(plain)
    secrets = []
    for mid in ("cli_one", "cli_two"):
        made = await create_merchant(env, mid=mid, name=mid, webhook_url=hook_url(sim, mid))
        secret = made["webhookEndpoint"]["secret"]
        assert len(signing.secret_key(secret)) >= 24
        secrets.append(secret)
    assert len(set(secrets)) == 2 and settings.webhook_secret not in secrets
    stored = await pool.fetch(
        "SELECT e.mid, s.secret FROM webhook_endpoint_secrets s"
        " JOIN webhook_endpoints e ON e.id = s.endpoint_id ORDER BY s.id"
    )
    assert [(r["mid"], r["secret"]) for r in stored] == list(
        zip(("cli_one", "cli_two"), secrets, strict=True)
    )


def test_a_secret_under_24_bytes_is_refused() -> None:
    short = "whsec_" + base64.b64encode(b"x" * 23).decode()
    with pytest.raises(ValueError, match="24"):
        signing.secret_key(short)
    with pytest.raises(ValidationError):
        Settings(webhook_secret=short)
    assert len(signing.secret_key("whsec_" + base64.b64encode(b"x" * 24).decode())) == 24


# --- the endpoint API ------------------------------------------------------------------------


async def test_register_list_roll_delete(
    client: Client, pool: asyncpg.Pool, sim: SimulatorHandle, other: dict[str, str]
) -> None:
    url = hook_url(sim, "LIFE")
    created = await register(client, url, description="orders")
    assert set(created) == {
        "id",
        "url",
        "description",
        "mode",
        "createdAt",
        "activeSecrets",
        "secret",
    }
    assert (created["url"], created["mode"], created["description"]) == (url, "test", "orders")
    assert len(signing.secret_key(created["secret"])) == signing.SECRET_BYTES

    listing = await client.get(ENDPOINTS)
    text = await listing.text()
    assert [e["id"] for e in json.loads(text)["endpoints"]] == [created["id"]]
    # Shown once: no list or lookup has it again.
    assert created["secret"] not in text and "whsec_" not in text
    got = await client.get(f"{ENDPOINTS}/{created['id']}")
    assert got.status == 200 and "whsec_" not in await got.text()
    # Another merchant neither lists nor reaches it.
    assert (await (await client.get(ENDPOINTS, headers=other)).json())["endpoints"] == []
    await problem(await client.get(f"{ENDPOINTS}/{created['id']}", headers=other), 404)

    # The same url twice is a conflict: roll its secret instead.
    await problem(await client.post(ENDPOINTS, json={"url": url}), 409, "url")

    rolled = await client.post(f"{ENDPOINTS}/{created['id']}/roll", json={"graceSeconds": 60})
    assert rolled.status == 201, await rolled.text()
    new = await rolled.json()
    assert new["secret"] != created["secret"] and new["activeSecrets"] == 2
    for bad in ({"graceSeconds": -1}, {"graceSeconds": 7 * 24 * 3600 + 1}, {"grace": 1}):
        await problem(await client.post(f"{ENDPOINTS}/{created['id']}/roll", json=bad), 422)

    deleted = await client.delete(f"{ENDPOINTS}/{created['id']}")
    assert deleted.status == 200 and (await deleted.json())["deleted"] is True
    await problem(await client.get(f"{ENDPOINTS}/{created['id']}"), 404)
    await problem(await client.delete(f"{ENDPOINTS}/{created['id']}"), 404)
    # A deleted endpoint can no longer be named by a payment.
    body = {**SEED_REQUEST, "orderId": "ORD_GONE", "webhookUrl": url}
    await problem(await client.post("/api/payment", json=body), 422, "webhookUrl")
    for raw in ("0", "abc", "9" * 19, "-1"):
        await problem(await client.get(f"{ENDPOINTS}/{raw}"), 404)


async def test_deliveries_to_a_deleted_endpoint_end_dead_and_listed(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    url = hook_url(sim, "DELETED")
    created = await register(client, url)
    tid = await pay(client, "ORD_DEL", webhookUrl=url)
    await by_hand(repo, tid, Status.SUCCESS)
    assert (await client.delete(f"{ENDPOINTS}/{created['id']}")).status == 200
    result = await Worker(settings, repo, http, owner="w").webhooks_pass()
    assert (result.claimed, result.delivered) == (1, 0)
    assert received(sim) == []  # nothing is signed for an endpoint that is gone
    [dead] = (await (await client.get("/api/webhooks/dead")).json())["deliveries"]
    assert (dead["tid"], dead["lastError"]) == (tid, "endpoint_deleted")


async def test_a_payment_without_webhook_url_uses_the_merchants_own_endpoint(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    other: dict[str, str],
) -> None:
    mine = await register(client, hook_url(sim, "MINE"))
    theirs = await register(client, hook_url(sim, "THEIRS"), headers=other)
    tid = await pay(client, "ORD_DEFAULT")
    await by_hand(repo, tid, Status.SUCCESS)
    await accept_only(http, sim, mine["secret"], theirs["secret"])
    await send_all(Worker(settings, repo, http, owner="w"), pool)
    [hook] = received(sim)
    assert hook["path"] == "/api/webhook/pg/MINE" and hook["verified"] is True
    assert verifies(hook, mine["secret"]) and not verifies(hook, theirs["secret"])


PRIVATE = [
    "http://127.0.0.1:1/x",
    "http://127.1/x",
    "http://2130706433/x",
    "http://0x7f.0.0.1/x",
    "http://017700000001/x",
    "http://0.0.0.0/x",
    "http://[::1]/x",
    "http://[::ffff:7f00:1]/x",
    "http://localhost/x",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
]


@pytest.mark.parametrize("url", PRIVATE)
async def test_registration_refuses_private_destinations(
    client: Client, pool: asyncpg.Pool, url: str
) -> None:
    before = await rows(pool)
    body = await problem(await client.post(ENDPOINTS, json={"url": url}), 422, "url")
    assert body["type"] == "/problems/destination-refused" and body["reason"], body
    assert await rows(pool) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": 1}, "url"),
        ({"url": "ftp://files/x"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url"),
        ({"url": "http://a b/"}, "url"),
        ({"url": "http://x/#frag"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://x/", "description": "d" * 501}, "description"),
        ({"url": "http://x/", "extra": 1}, "extra"),
    ],
)
async def test_a_bad_registration_is_422_and_stores_nothing(
    client: Client, pool: asyncpg.Pool, body: dict[str, Any], field: str
) -> None:
    before = await rows(pool)
    await problem(await client.post(ENDPOINTS, json=body), 422, field)
    assert await rows(pool) == before


async def test_endpoints_per_merchant_are_capped(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    api_key: str,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    client = await aiohttp_client(
        create_app(tuned(settings, max_webhook_endpoints=2)), headers=bearer(api_key)
    )
    first = await register(client, hook_url(sim, "CAP1"))
    await register(client, hook_url(sim, "CAP2"))
    before = await rows(pool)
    body = await problem(await client.post(ENDPOINTS, json={"url": hook_url(sim, "CAP3")}), 409)
    assert body["type"] == "/problems/limit-reached" and body["limit"] == 2
    assert await rows(pool) == before
    # Deleting one makes room.
    assert (await client.delete(f"{ENDPOINTS}/{first['id']}")).status == 200
    await register(client, hook_url(sim, "CAP3"))


async def test_a_test_event_is_signed_sent_and_paced(
    client: Client, sim: SimulatorHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    created = await register(client, hook_url(sim, "PING"))
    await accept_only(http, sim, created["secret"])
    before = await rows(pool)
    resp = await client.post(f"{ENDPOINTS}/{created['id']}/test")
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["delivered"] is True and answer["responseCode"] == 200
    [hook] = received(sim)
    assert hook["verified"] is True and verifies(hook, created["secret"])
    assert hook["body"]["status"] == "TEST" and hook["body"]["endpointId"] == created["id"]
    assert hook["headers"]["webhook-id"] == answer["eventId"]
    # Nothing is stored for a test event, and a second one right away is refused.
    assert await rows(pool) == before
    again = await client.post(f"{ENDPOINTS}/{created['id']}/test")
    await problem(again, 429)
    assert int(again.headers["Retry-After"]) >= 1
    assert len(received(sim)) == 1


async def test_a_test_event_reports_a_failing_endpoint(
    client: Client, sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    created = await register(client, hook_url(sim, "FAILING"))
    await accept_only(http, sim, signing.new_secret())  # the merchant has another secret
    answer = await (await client.post(f"{ENDPOINTS}/{created['id']}/test")).json()
    assert answer == {
        "endpointId": created["id"],
        "eventId": answer["eventId"],
        "delivered": False,
        "error": "http_401",
        "responseCode": 401,
    }


async def test_concurrent_registrations_do_not_pass_the_cap(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    api_key: str,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    client = await aiohttp_client(
        create_app(tuned(settings, max_webhook_endpoints=2)), headers=bearer(api_key)
    )
    answers = await asyncio.gather(
        *(client.post(ENDPOINTS, json={"url": hook_url(sim, f"RACE{i}")}) for i in range(15))
    )
    assert sorted(a.status for a in answers) == [201, 201] + [409] * 13
    assert (
        await pool.fetchval("SELECT count(*) FROM webhook_endpoints WHERE deleted_at IS NULL") == 2
    )


@pytest.mark.parametrize("text", ["a\x00b", "line\nbreak", "esc\x1b[31m", "nel\x85"])
async def test_a_description_with_control_characters_is_422(
    client: Client, pool: asyncpg.Pool, sim: SimulatorHandle, text: str
) -> None:
    before = await rows(pool)
    body = {"url": hook_url(sim, "CTRL"), "description": text}
    await problem(await client.post(ENDPOINTS, json=body), 422, "description")
    assert await rows(pool) == before


async def test_naming_the_default_receiver_is_naming_none(
    client: Client, pool: asyncpg.Pool, settings: Settings, sim: SimulatorHandle
) -> None:
    mine = await register(client, hook_url(sim, "OWN"))
    tid = await pay(client, "ORD_NAMED_DEFAULT", webhookUrl=str(settings.default_webhook_url))
    row = await pool.fetchrow(
        "SELECT webhook_url, endpoint_id FROM payment_processes WHERE tid = $1", tid
    )
    # The merchant's own endpoint, not the operator's receiver with the operator's secret.
    assert (row["webhook_url"], row["endpoint_id"]) == (mine["url"], mine["id"])
