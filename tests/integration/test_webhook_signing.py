"""Signed webhooks end to end: the engine signs, the third-party `standardwebhooks` verifies.

Payments come in through the intake, are settled by the manual trigger, and go out through
real webhook passes to the simulated merchant, which checks every signature itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook, WebhookVerificationError

from config.settings import DEV_WEBHOOK_SECRET, Settings
from engine.errors import DatabaseUnavailable
from engine.models import Status
from engine.store.repository import Repository
from engine.webhooks import signing
from engine.worker.process import Worker
from simulator.merchant import MERCHANT_STATE
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.integration.engine_support import by_hand

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Secret:
    """A whsec_ secret, named for readability."""

    secret: str


Hook = dict[str, Any]
SEED_KEYS = [
    "status",
    "code",
    "transactionId",
    "approvalNo",
    "amount",
    "currency",
    "echo",
    "message",
]


async def until(check: Callable[[], Awaitable[T]], what: str, timeout: float = 10.0) -> T:
    """Await `check` until it returns something truthy; fail naming `what` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"not true after {timeout}s: {what} (last: {result!r})")
        await asyncio.sleep(0.02)


def received(sim: SimulatorHandle) -> list[Hook]:
    return list(sim.app[MERCHANT_STATE].received)


def verify(hook: Hook, secret: str) -> Any:
    """The third-party library's verdict on the raw body and headers the merchant received."""
    return Webhook(secret).verify(hook["raw"].encode(), hook["headers"])


def signatures_of(hook: Hook) -> list[str]:
    header: str = hook["headers"]["webhook-signature"]
    return header.split(" ")


async def pay(client: TestClient, order_id: str, webhook_url: str | None = None) -> str:
    """Create a payment through the intake; returns its tid."""
    body: dict[str, Any] = {**SEED_REQUEST, "orderId": order_id}
    if webhook_url is not None:
        body["webhookUrl"] = webhook_url
    resp = await client.post("/api/payment", json=body)
    assert resp.status == 202, await resp.text()
    tid: str = (await resp.json())["transactionId"]
    return tid


async def deliver_all(worker: Worker, pool: asyncpg.Pool) -> None:
    """Run webhook passes until nothing is left to deliver."""

    async def done() -> bool:
        await worker.webhooks_pass()
        return not await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status <> 'DELIVERED'"
        )

    await until(done, "every delivery DELIVERED")


async def set_secrets(http: aiohttp.ClientSession, sim: SimulatorHandle, *secrets: str) -> None:
    async with http.post(
        f"{sim.url}/api/webhook/admin/secrets", json={"secrets": list(secrets)}
    ) as resp:
        assert resp.status == 200, await resp.text()


async def event_id_of(pool: asyncpg.Pool, tid: str) -> str:
    event_id: str = await pool.fetchval(
        "SELECT d.event_id FROM webhook_deliveries d JOIN payment_processes p"
        " ON p.id = d.payment_id WHERE p.tid = $1",
        tid,
    )
    return event_id


async def test_signed_delivery_verifies_and_keeps_its_id_across_a_retry(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    async with http.post(f"{sim.url}/api/webhook/admin/faults", json={"fail_next": 1}) as resp:
        assert resp.status == 200
    tid = await pay(client, "ORD_SIGNED")
    assert await by_hand(repo, tid, Status.SUCCESS) == "settled"
    worker = Worker(settings, repo, http, owner="t")
    first = await worker.webhooks_pass()
    assert (first.claimed, first.delivered) == (1, 0)
    await deliver_all(worker, pool)

    hooks = received(sim)
    assert [h["status"] for h in hooks] == [503, 200]
    event_id = await event_id_of(pool, tid)
    assert {h["headers"]["webhook-id"] for h in hooks} == {event_id}
    for hook in hooks:
        assert hook["verified"] is True
        # The body is the seed's JSON, byte for byte what was signed.
        body = verify(hook, DEV_WEBHOOK_SECRET)
        assert body["transactionId"] == tid and list(body) == SEED_KEYS
        assert hook["raw"] == json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        assert len(signatures_of(hook)) == 1
        assert abs(int(hook["headers"]["webhook-timestamp"]) - time.time()) < 60
        with pytest.raises(WebhookVerificationError):
            verify(hook, signing.new_secret())
        # Any change to the body breaks the signature.
        tampered = {**hook, "raw": hook["raw"].replace('"amount":10000', '"amount":10001')}
        assert tampered["raw"] != hook["raw"]
        with pytest.raises(WebhookVerificationError):
            verify(tampered, DEV_WEBHOOK_SECRET)


async def test_registered_endpoint_signs_with_its_own_secret(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    shop = f"{sim.url}/api/webhook/pg/SHOP1"
    # Made before the merchant had an endpoint: it goes to the operator's default receiver.
    plain_tid = await pay(client, "ORD_PLAIN")
    secret = signing.new_secret()
    endpoint = await repo.endpoints.add_endpoint(MID, "test", shop, secret)
    assert endpoint is not None
    assert (endpoint.url, endpoint.mid, endpoint.mode) == (shop, MID, "test")
    await set_secrets(http, sim, secret, DEV_WEBHOOK_SECRET)
    shop_tids = [await pay(client, f"ORD_SHOP_{i}", shop) for i in range(2)]
    for tid in [*shop_tids, plain_tid]:
        await by_hand(repo, tid, Status.SUCCESS)

    # One secrets lookup for the whole pass, not one per delivery.
    lookups: list[list[int | None]] = []
    real_lookup = repo.endpoints.endpoint_secrets

    async def counted(deliveries: Any) -> dict[int, list[str]]:
        lookups.append([d.endpoint_id for d in deliveries])
        return await real_lookup(deliveries)

    repo.endpoints.endpoint_secrets = counted  # type: ignore[method-assign]
    result = await Worker(settings, repo, http, owner="t").webhooks_pass()
    assert (result.claimed, result.delivered) == (3, 3)
    assert len(lookups) == 1
    assert sorted(lookups[0], key=str) == sorted([endpoint.id, endpoint.id, None], key=str)

    by_tid = {h["body"]["transactionId"]: h for h in received(sim)}
    for tid in shop_tids:
        hook = by_tid[tid]
        assert hook["path"] == "/api/webhook/pg/SHOP1"
        assert verify(hook, secret)["transactionId"] == tid
        with pytest.raises(WebhookVerificationError):
            verify(hook, DEV_WEBHOOK_SECRET)
    # A payment with no endpoint goes to the operator's receiver, with the operator's secret.
    assert verify(by_tid[plain_tid], DEV_WEBHOOK_SECRET)["transactionId"] == plain_tid
    with pytest.raises(WebhookVerificationError):
        verify(by_tid[plain_tid], secret)


async def test_rolling_signs_with_both_secrets_until_the_old_one_expires(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    shop = f"{sim.url}/api/webhook/pg/ROLL"
    old, new = Secret(signing.new_secret()), Secret(signing.new_secret())
    endpoint = await repo.endpoints.add_endpoint(MID, "test", shop, old.secret)
    assert endpoint is not None
    # The merchant has not switched yet: it still accepts only the old secret.
    await set_secrets(http, sim, old.secret)
    grace = 3.0
    assert await repo.endpoints.roll_endpoint(MID, "test", endpoint.id, new.secret, grace)
    # Not another merchant's, not another mode's, not an unknown one.
    assert not await repo.endpoints.roll_endpoint("roller", "test", endpoint.id, "whsec_AAAA", 1)
    assert not await repo.endpoints.roll_endpoint(MID, "live", endpoint.id, "whsec_AAAA", 1)
    assert not await repo.endpoints.roll_endpoint(MID, "test", endpoint.id + 1, "whsec_AAAA", 1)
    left = {
        r["secret"]: r["left"]
        for r in await pool.fetch(
            "SELECT secret, expires_at - now() AS left FROM webhook_endpoint_secrets"
        )
    }
    assert set(left) == {old.secret, new.secret} and left[new.secret] is None
    assert 0 < left[old.secret].total_seconds() <= grace

    tid = await pay(client, "ORD_ROLL", shop)
    await by_hand(repo, tid, Status.SUCCESS)
    worker = Worker(settings, repo, http, owner="t")
    assert (await worker.webhooks_pass()).delivered == 1
    [during] = received(sim)
    # Newest first; either secret verifies, so the merchant can switch whenever it likes.
    assert len(signatures_of(during)) == 2
    assert signatures_of(during)[0] == signing.sign(
        new.secret,
        during["headers"]["webhook-id"],
        int(during["headers"]["webhook-timestamp"]),
        during["raw"].encode(),
    )
    assert verify(during, old.secret)["transactionId"] == tid
    assert verify(during, new.secret)["transactionId"] == tid

    async def only_new_active() -> bool:
        return await repo.endpoints.secrets_of_endpoint(MID, "test", endpoint.id) == [new.secret]

    await until(only_new_active, "the old secret expired", timeout=grace + 10)
    await set_secrets(http, sim, new.secret)
    assert await by_hand(repo, tid, Status.SUCCESS) == "resent"
    assert (await worker.webhooks_pass()).delivered == 1
    after = received(sim)[-1]
    assert after["headers"]["webhook-id"] == during["headers"]["webhook-id"]
    assert len(signatures_of(after)) == 1
    assert verify(after, new.secret)["transactionId"] == tid
    with pytest.raises(WebhookVerificationError):
        verify(after, old.secret)


async def test_wrong_secret_is_refused_with_401_and_retried(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    # The merchant expects a secret the engine does not have for this url.
    await set_secrets(http, sim, signing.new_secret())
    tid = await pay(client, "ORD_WRONG")
    await by_hand(repo, tid, Status.FAILED)
    worker = Worker(settings, repo, http, owner="t")
    assert (await worker.webhooks_pass()).delivered == 0
    [refused] = received(sim)
    assert refused["status"] == 401
    assert refused["verified"] is False and refused["rejectReason"] == "signature_mismatch"
    delivery = await pool.fetchrow("SELECT * FROM webhook_deliveries")
    assert delivery["status"] == "PENDING" and delivery["last_response_code"] == 401

    # The merchant fixes its configuration; the retry goes through with the same id.
    await set_secrets(http, sim, DEV_WEBHOOK_SECRET)
    await deliver_all(worker, pool)
    codes = [
        r["response_code"]
        for r in await pool.fetch("SELECT response_code FROM webhook_attempts ORDER BY attempt_no")
    ]
    assert codes == [401, 200]
    hooks = received(sim)
    assert [h["status"] for h in hooks] == [401, 200]
    assert hooks[1]["verified"] is True
    assert {h["headers"]["webhook-id"] for h in hooks} == {await event_id_of(pool, tid)}


async def test_replayed_delivery_with_an_old_timestamp_is_refused(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    tid = await pay(client, "ORD_REPLAY")
    await by_hand(repo, tid, Status.SUCCESS)
    assert (await Worker(settings, repo, http, owner="t").webhooks_pass()).delivered == 1
    [original] = received(sim)
    assert original["status"] == 200

    # Someone who captured it re-signs nothing: the signature is valid, only old.
    body = original["raw"].encode()
    msg_id = original["headers"]["webhook-id"]
    stale = int(time.time()) - 3600
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stale),
        "webhook-signature": signing.sign(DEV_WEBHOOK_SECRET, msg_id, stale, body),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(DEV_WEBHOOK_SECRET).verify(body, headers)
    async with http.post(f"{sim.url}/api/webhook/pg/DUMMY", data=body, headers=headers) as resp:
        assert resp.status == 401
        assert await resp.json() == {"received": False, "error": "timestamp_too_old"}
    replay = received(sim)[-1]
    assert replay["verified"] is False and replay["rejectReason"] == "timestamp_too_old"


async def test_endpoints_cli_adds_and_rolls(
    pool: asyncpg.Pool, repo: Repository, database_url: str
) -> None:
    url = "https://merchant.example/hooks/pg"
    await repo.merchants.create_merchant("m1", "CLI merchant")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["DATABASE_URL"] = database_url

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.commands.endpoints",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await cli("add", url, "--mid", "m1", "--mode", "live")
    assert code == 0, err
    added = json.loads(out)
    first = added["secret"]
    signing.secret_key(first)
    assert (added["url"], added["mode"]) == (url, "live")
    code, out, err = await cli(
        "roll", str(added["id"]), "--mid", "m1", "--mode", "live", "--grace-seconds", "3600"
    )
    assert code == 0, err
    second = out.strip()
    assert second != first
    rows = await pool.fetch(
        "SELECT e.mid, e.mode, s.secret, s.expires_at - now() AS left"
        " FROM webhook_endpoint_secrets s JOIN webhook_endpoints e ON e.id = s.endpoint_id"
        " WHERE e.url = $1 ORDER BY s.id",
        url,
    )
    assert [(r["mid"], r["mode"], r["secret"]) for r in rows] == [
        ("m1", "live", first),
        ("m1", "live", second),
    ]
    assert 3500 < rows[0]["left"].total_seconds() <= 3600 and rows[1]["left"] is None
    code, out, err = await cli("list", "--mid", "m1", "--mode", "live")
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["id"] == added["id"] and "secret" not in out.replace("activeSecrets", "")

    # The other mode's endpoint is not this one; unknown ids and merchants are refused.
    assert (
        await cli("roll", str(added["id"]), "--mid", "m1", "--mode", "test", "--grace-seconds", "1")
    )[0] == 1
    assert (await cli("add", url, "--mid", "nobody", "--mode", "live"))[0] == 1
    assert (await cli("add", "not a url", "--mid", "m1", "--mode", "live"))[0] == 2
    assert (await cli("add", url, "--mid", "m1"))[0] == 2  # the mode is required


async def test_a_malformed_stored_secret_fails_only_that_delivery(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    broken = f"{sim.url}/api/webhook/pg/BROKEN"
    good_tid = await pay(client, "ORD_FINE")  # before the endpoint: to the default receiver
    # passes the table's prefix check only
    await repo.endpoints.add_endpoint(MID, "test", broken, "whsec_%%%")
    bad_tid = await pay(client, "ORD_BROKEN", broken)
    for tid in (bad_tid, good_tid):
        await by_hand(repo, tid, Status.SUCCESS)
    result = await Worker(settings, repo, http, owner="t").webhooks_pass()
    assert (result.claimed, result.delivered) == (2, 1)
    assert [h["body"]["transactionId"] for h in received(sim)] == [good_tid]
    row = await pool.fetchrow(
        "SELECT d.status, d.last_error FROM webhook_deliveries d"
        " JOIN payment_processes p ON p.id = d.payment_id WHERE p.tid = $1",
        bad_tid,
    )
    # A reason code, not our exception text; the secret itself is never written to the record.
    assert row["status"] == "PENDING" and row["last_error"] == "invalid_secret"


async def test_failed_secrets_lookup_hands_the_claims_back(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    tid = await pay(client, "ORD_LOOKUP")
    await by_hand(repo, tid, Status.SUCCESS)

    async def unavailable(deliveries: Any) -> dict[int, list[str]]:
        raise DatabaseUnavailable()

    real_lookup = repo.endpoints.endpoint_secrets
    repo.endpoints.endpoint_secrets = unavailable  # type: ignore[method-assign]
    worker = Worker(settings, repo, http, owner="t")
    with pytest.raises(DatabaseUnavailable):
        await worker.webhooks_pass()
    # Nothing was sent and no attempt counted: the delivery is due again at once.
    row = await pool.fetchrow("SELECT status, attempts, lease_owner FROM webhook_deliveries")
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("PENDING", 0, None)
    assert received(sim) == []
    repo.endpoints.endpoint_secrets = real_lookup  # type: ignore[method-assign]
    assert (await worker.webhooks_pass()).delivered == 1
