"""Checkout sessions end to end over HTTP on a real database: create, view, open in the app,
confirm or cancel, expiry, the payment through the worker, the customer's history."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.checkout import sessions
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.integration.checkout_support import (
    DECLINES,
    ORDER,
    SESSIONS,
    act,
    create,
    publishable,
    shopper,
    view,
)

Client = TestClient[Any, Any]


async def _settle(settings: Settings, repo: Repository) -> None:
    async with aiohttp.ClientSession() as http:
        worker = Worker(settings, repo, http, owner="test-worker")
        assert (await worker.payments_pass()).settled == 1


async def test_session_paid_from_the_phone(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle, pool: asyncpg.Pool
) -> None:
    pk = await publishable(repo, settings)
    made = await create(client, customerRef="USR_9")
    assert made["id"].startswith("cs_") and made["clientSecret"].startswith(made["id"] + "_secret_")
    assert made["status"] == "open" and made["paymentTid"] is None and made["amount"] == 10000
    status, seen = await view(client, pk, made)
    assert status == 200, seen
    assert seen["status"] == "open" and seen["merchantName"] == "Test merchant"
    assert seen["appUrl"].endswith(f"/app/pay/{made['id']}") and seen["outcome"] is None
    assert seen["qr"]["svg"].split("?")[0].endswith("/qr.svg")

    jane = await shopper(repo, sim)
    page = await client.get(f"/app/pay/{made['id']}", headers=jane.headers(json=False))
    assert page.status == 200 and "Hamster food" in await page.text()
    assert (await view(client, pk, made))[1]["status"] == "scanned"

    status, done = await act(client, jane, made["id"], "confirm")
    assert status == 200 and done["changed"] is True and done["reason"] is None
    assert done["session"]["status"] == "confirmed"
    assert done["session"]["payment"]["status"] == "PENDING"
    assert (await view(client, pk, made))[1]["outcome"] is None  # not final yet

    await _settle(settings, repo)
    status, seen = await view(client, pk, made)
    assert seen["payment"]["status"] == "SUCCESS" and seen["payment"]["approvalNo"]
    assert seen["outcome"] == {"result": "success", "code": None} and seen["final"] is True
    merchant = await (await client.get(f"{SESSIONS}/{made['id']}")).json()
    assert merchant["paymentTid"] == seen["payment"]["tid"] and merchant["status"] == "confirmed"
    # An ordinary payment: the merchant's lookup knows it, with the customer's reference.
    row = await pool.fetchrow(
        "SELECT user_public_id, card_token FROM payment_processes WHERE tid = $1",
        merchant["paymentTid"],
    )
    assert row["user_public_id"] == "USR_9" and row["card_token"].startswith("card_")
    lookup = await client.get(f"/api/payments/{merchant['paymentTid']}")
    assert lookup.status == 200 and (await lookup.json())["status"] == "SUCCESS"
    history = await (await client.get("/app/api/history", headers=jane.headers())).json()
    assert [i["tid"] for i in history["items"]] == [merchant["paymentTid"]]
    assert history["items"][0]["merchantName"] == "Test merchant"
    assert history["items"][0]["amount_text"] == "₩10,000"


async def test_declined_card_fails_with_its_reason(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle
) -> None:
    pk = await publishable(repo, settings)
    made = await create(client)
    bob = await shopper(repo, sim, "bob@example.com", DECLINES)
    assert (await act(client, bob, made["id"], "confirm"))[0] == 200
    await _settle(settings, repo)
    seen = (await view(client, pk, made))[1]
    assert seen["payment"]["status"] == "FAILED"
    assert seen["payment"]["failureReason"] == "CARD_DECLINED"
    assert seen["outcome"] == {"result": "failure", "code": "card_declined"}


async def test_two_phones_confirm_at_once_one_payment(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle, pool: asyncpg.Pool
) -> None:
    made = await create(client)
    phones = [await shopper(repo, sim, f"p{i}@example.com") for i in range(2)]
    answers = await asyncio.gather(
        *(act(client, who, made["id"], "confirm") for who in phones for _ in range(3))
    )
    assert sorted(status for status, _ in answers) == [200, 409, 409, 409, 409, 409]
    assert {a["reason"] for s, a in answers if s == 409} == {"already_confirmed"}
    count = await pool.fetchval(
        "SELECT count(*) FROM payment_processes p JOIN checkout_sessions s"
        " ON s.id = p.checkout_session_id WHERE s.public_id = $1",
        made["id"],
    )
    assert count == 1


async def test_cancel_then_confirm_changes_nothing(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle, pool: asyncpg.Pool
) -> None:
    pk = await publishable(repo, settings)
    made = await create(client)
    jane = await shopper(repo, sim)
    status, canceled = await act(client, jane, made["id"], "cancel")
    assert status == 200 and canceled["session"]["status"] == "canceled"
    status, refused = await act(client, jane, made["id"], "confirm")
    assert status == 409 and refused["changed"] is False
    assert refused["reason"] == "session_canceled"
    assert (await act(client, jane, made["id"], "cancel"))[1]["reason"] == "session_canceled"
    seen = (await view(client, pk, made))[1]
    assert seen["outcome"] == {"result": "failure", "code": "canceled_by_customer"}
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 0


async def test_expiry_lazily_and_by_the_sweep(
    client: Client, repo: Repository, settings: Settings, sim: SimulatorHandle, pool: asyncpg.Pool
) -> None:
    pk = await publishable(repo, settings)
    first, second = await create(client), await create(client, orderId="ORD-2")
    # Time passes (the database's clock decides expiry): both are past their time.
    await pool.execute("UPDATE checkout_sessions SET expires_at = now() - interval '1 second'")
    jane = await shopper(repo, sim)
    status, refused = await act(client, jane, first["id"], "confirm")
    assert status == 409 and refused["reason"] == "session_expired"
    seen = (await view(client, pk, first))[1]
    assert seen["status"] == "expired"
    assert seen["outcome"] == {"result": "failure", "code": "expired"}
    assert await sessions.expire_due(repo) == 1  # only the second was still open
    assert (await view(client, pk, second))[1]["status"] == "expired"
    assert await sessions.expire_due(repo) == 0
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 0


async def test_idempotent_create(client: Client) -> None:
    headers = {"Idempotency-Key": "k-1"}
    one = await client.post(SESSIONS, json=ORDER, headers=headers)
    again = await client.post(SESSIONS, json=ORDER, headers=headers)
    assert (one.status, again.status) == (201, 200)
    assert (await one.json())["id"] == (await again.json())["id"]
    other = await client.post(SESSIONS, json=ORDER | {"amount": 5}, headers=headers)
    assert other.status == 409 and (await other.json())["field"] == "Idempotency-Key"
    same_order = await client.post(SESSIONS, json=ORDER | {"amount": 5})
    assert same_order.status == 409 and (await same_order.json())["field"] == "orderId"


async def test_history_and_pages_need_a_sign_in(client: Client) -> None:
    made = await create(client)
    page = await client.get(f"/app/pay/{made['id']}", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == f"/app/?next=/app/pay/{made['id']}"
    resp = await client.get("/app/api/history")
    assert resp.status == 401 and (await resp.json())["code"] == "signed_out"
    login = await client.get("/app/")
    assert login.status == 200 and "Log in" in await login.text()
