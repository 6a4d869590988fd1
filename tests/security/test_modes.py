"""Test mode is a sandbox (issue 10, part C): a key sees and acts on its own mode's objects only.

Every payment, refund, key, webhook endpoint and history event records the mode of the key that
made it. The other mode's objects answer 404 exactly like ids nobody has; keys mint keys of their
own mode only; manual settling is for PENDING test payments; test payments reach the test
providers and live ones the live providers; an Atom callback settles only payments of the mode
whose credentials sealed it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from api.app import create_app
from config.settings import Settings
from engine.models import Outcome, Status
from engine.providers import atom, atom_crypto
from engine.providers.atom_crypto import AtomCredentials
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator import SimulatorSettings, running
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.integration.engine_support import acquirer_config, ledger, tuned
from tests.integration.test_auth import (
    DEAD,
    HOOKS,
    KEY_RE,
    KEYS,
    LOOKUP,
    PAY,
    REDELIVER,
    REVOKE,
    ROLL,
    TRIGGER,
    UNKNOWN_ID,
    UNKNOWN_TID,
    UNRESOLVED,
    failures,
    key_id,
    pay,
    problem,
    table,
    unresolved_payment,
)
from tests.merchant_cli import bearer
from tests.waiting import wait_until

ENDPOINTS = "/api/webhook-endpoints"
ENDPOINT = "/api/webhook-endpoints/{}"
HISTORY = "/api/payments"
REFUNDS = "/api/payments/{}/refunds"
CALLBACK = "/api/providers/atom/callback"
# A refund id nobody has, of the shape real ones have (RF + 11 Base62 characters).
UNKNOWN_REFUND = "RF000000000ZZ"
MODES = ("test", "live")

Client = TestClient[Any, Any]
Headers = dict[str, str] | None
# What wait_until is given: named, so mypy infers its T as bool rather than Never.
Check = Callable[[], bool | Awaitable[bool]]


# --- helpers -------------------------------------------------------------------------------


async def everything(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Every row the API can write, refunds and endpoints included: equal means nothing changed."""
    names = (
        "payment_processes",
        "webhook_deliveries",
        "webhook_attempts",
        "payment_events",
        "refunds",
        "webhook_endpoints",
        "webhook_endpoint_secrets",
        "merchants",
    )
    state = {name: await table(pool, name) for name in names}
    # A key's last_used_at is written by authentication itself: compare the rest.
    state["api_keys"] = [
        r["row"]
        for r in await pool.fetch(
            "SELECT (id, merchant_id, mode, prefix, key_hash, created_at, expires_at, revoked_at)"
            "::text AS row FROM api_keys ORDER BY id"
        )
    ]
    return state


def _comparable(resp: aiohttp.ClientResponse, body: Any, ident: str) -> tuple[Any, ...]:
    """What a 404 shows, with the id asked for masked: equal means nothing tells them apart.

    Unlike test_auth's, the id is masked only as a whole token: a key or endpoint id such as 4
    must not also mask the 4s of `"status": 404`.
    """
    token = re.compile(rf"(?<![0-9A-Za-z_]){re.escape(ident)}(?![0-9A-Za-z_])")
    masked = json.loads(token.sub("<id>", json.dumps(body)))
    headers = sorted(k for k in resp.headers if k.lower() not in ("date", "content-length"))
    return resp.status, resp.content_type, headers, masked


async def settled_by_engine(pool: asyncpg.Pool, tid: str) -> None:
    """As a worker leaves a payment the acquirer approved (the live key cannot settle by hand)."""
    await pool.execute(
        "UPDATE payment_processes SET status = 'SUCCESS', approval_no = 'AP1',"
        " processed_at = now(), last_actor = 'worker' WHERE tid = $1",
        tid,
    )


async def captured(client: Client, pool: asyncpg.Pool, order_id: str, headers: Headers) -> str:
    """A SUCCESS payment of the caller's mode with one webhook queued; returns its tid."""
    tid = await pay(client, order_id, headers)
    await settled_by_engine(pool, tid)
    resp = await client.post(TRIGGER.format(tid, "SUCCESS"), headers=headers)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["action"] == "resent"
    return tid


async def dead_delivery(
    client: Client, pool: asyncpg.Pool, order_id: str, headers: Headers
) -> tuple[str, int]:
    """A captured payment whose webhook used up its attempts; returns (tid, delivery id)."""
    tid = await captured(client, pool, order_id, headers)
    delivery: int = await pool.fetchval(
        "UPDATE webhook_deliveries d SET status = 'DEAD', attempts = 8, last_error = 'refused'"
        " FROM payment_processes p WHERE p.id = d.payment_id AND p.tid = $1 RETURNING d.id",
        tid,
    )
    return tid, delivery


async def refund(client: Client, tid: str, key: str, headers: Headers, amount: int = 1000) -> str:
    """A refund of `amount` on a captured payment; returns its refund id."""
    sent = {**(headers or {}), "Idempotency-Key": key}
    resp = await client.post(REFUNDS.format(tid), json={"amount": amount}, headers=sent)
    assert resp.status == 202, await resp.text()
    refund_id: str = (await resp.json())["refundId"]
    return refund_id


async def endpoint(client: Client, sim: SimulatorHandle, name: str, headers: Headers) -> int:
    """A webhook endpoint of the caller's mode at the simulator's receiver; returns its id."""
    body = {"url": f"{sim.url}/api/webhook/pg/{name}", "description": name}
    resp = await client.post(ENDPOINTS, json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    found: int = (await resp.json())["id"]
    return found


async def received(http: aiohttp.ClientSession, sim: SimulatorHandle) -> int:
    """How many webhooks the simulator's receiver got, on every path."""
    async with http.get(f"{sim.url}/api/webhook/received") as resp:
        assert resp.status == 200
        return len((await resp.json())["webhooks"])


async def mode_of(pool: asyncpg.Pool, tid: str) -> str:
    """The mode a payment was recorded with."""
    found: str = await pool.fetchval("SELECT mode FROM payment_processes WHERE tid = $1", tid)
    return found


@dataclass(frozen=True, slots=True)
class World:
    """One of every id-taking object, all of one mode of merchant MID."""

    pending: str
    captured: str
    dead_tid: str
    delivery: int
    refund: str
    key: int
    endpoint: int

    def ident(self, kind: str) -> str:
        """The id of the object of `kind`, as it goes in a path."""
        return str(getattr(self, kind))


async def build(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    mode: str,
    headers: Headers,
) -> World:
    """Every kind of object in `mode`, made through the API with a key of that mode."""
    suffix = mode.upper()
    pending = await pay(client, f"ORD_PENDING_{suffix}", headers)
    paid = await captured(client, pool, f"ORD_PAID_{suffix}", headers)
    dead_tid, delivery = await dead_delivery(client, pool, f"ORD_DEAD_{suffix}", headers)
    refund_id = await refund(client, paid, f"REFUND_{suffix}", headers)
    spare = await repo.merchants.issue_key(MID, mode, settings.api_key_secret)
    endpoint_id = await endpoint(client, sim, f"EP_{suffix}", headers)
    return World(pending, paid, dead_tid, delivery, refund_id, spare.id, endpoint_id)


@pytest.fixture
async def live(repo: Repository, settings: Settings, api_key: str) -> dict[str, str]:
    """The Authorization header of a live key of MID, the merchant of `client`'s test key."""
    return bearer((await repo.merchants.issue_key(MID, "live", settings.api_key_secret)).key)


# --- 1. the other mode's ids are unknown ids -----------------------------------------------

REFUND_PROBE = {"amount": 500}
# Every route that takes an id: (method, path, which object, owner's status in test mode,
# owner's status in live mode). A live key may not settle by hand, hence trigger-pending's 403.
BY_ID: dict[str, tuple[str, str, str, int, int]] = {
    "lookup": ("GET", LOOKUP, "pending", 200, 200),
    "webhooks": ("GET", HOOKS, "pending", 200, 200),
    "trigger-pending": ("POST", TRIGGER.format("{}", "SUCCESS"), "pending", 202, 403),
    "trigger-resend": ("POST", TRIGGER.format("{}", "SUCCESS"), "captured", 202, 202),
    "events": ("GET", "/api/payments/{}/events", "pending", 200, 200),
    "refunds": ("GET", REFUNDS, "captured", 200, 200),
    "cancel": ("POST", "/api/payments/{}/cancel", "pending", 200, 200),
    "refund": ("POST", REFUNDS, "captured", 202, 202),
    "get-refund": ("GET", "/api/refunds/{}", "refund", 200, 200),
    "redeliver": ("POST", REDELIVER, "delivery", 202, 202),
    "roll-key": ("POST", ROLL, "key", 201, 201),
    "revoke-key": ("DELETE", REVOKE, "key", 200, 200),
    "endpoint": ("GET", ENDPOINT, "endpoint", 200, 200),
    "delete-endpoint": ("DELETE", ENDPOINT, "endpoint", 200, 200),
    "roll-endpoint": ("POST", ENDPOINT + "/roll", "endpoint", 201, 201),
    "test-endpoint": ("POST", ENDPOINT + "/test", "endpoint", 200, 200),
}
# Ids nobody has, of each kind's shape.
UNKNOWN = {
    "pending": UNKNOWN_TID,
    "captured": UNKNOWN_TID,
    "refund": UNKNOWN_REFUND,
    "delivery": str(UNKNOWN_ID),
    "key": str(UNKNOWN_ID),
    "endpoint": str(UNKNOWN_ID),
}
# (the mode asking, the mode owning)
DIRECTIONS = {"live-key-on-test-ids": ("live", "test"), "test-key-on-live-ids": ("test", "live")}


async def _call(
    client: Client, method: str, template: str, ident: str, headers: Headers
) -> aiohttp.ClientResponse:
    """One request to an id-taking route; a refund carries its Idempotency-Key and body."""
    path = template.format(ident)
    if method == "POST" and template == REFUNDS:
        sent = {**(headers or {}), "Idempotency-Key": "PROBE_REFUND"}
        return await client.post(path, json=REFUND_PROBE, headers=sent)
    return await client.request(method, path, headers=headers)


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize("route", BY_ID.values(), ids=BY_ID.keys())
async def test_the_other_modes_id_is_404_like_an_unknown_one(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    live: dict[str, str],
    route: tuple[str, str, str, int, int],
    direction: tuple[str, str],
) -> None:
    method, template, kind, test_status, live_status = route
    asking, owning = direction
    keys: dict[str, Headers] = {"test": None, "live": live}
    # Both modes have one of everything, so the asker's own mode is not empty.
    worlds = {
        mode: await build(client, pool, repo, settings, sim, mode, keys[mode]) for mode in MODES
    }
    theirs = worlds[owning].ident(kind)
    unknown = UNKNOWN[kind]

    before = await everything(pool)
    sent_before = await received(http, sim)
    other_mode = await _call(client, method, template, theirs, keys[asking])
    other_body = await problem(other_mode, 404)
    nobodys = await _call(client, method, template, unknown, keys[asking])
    unknown_body = await problem(nobodys, 404)
    # Identical but for the id asked for: whether the other mode has it does not show.
    assert _comparable(other_mode, other_body, theirs) == _comparable(
        nobodys, unknown_body, unknown
    )
    # Nothing was written anywhere, and nothing was sent (the endpoint test event).
    assert await everything(pool) == before
    assert await received(http, sim) == sent_before
    assert failures(client) == Counter()

    # The id is real: a key of its own mode gets it.
    owners = await _call(client, method, template, theirs, keys[owning])
    expected = test_status if owning == "test" else live_status
    assert owners.status == expected, await owners.text()


async def test_a_payment_reports_only_to_an_endpoint_of_its_own_mode(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    sim: SimulatorHandle,
    live: dict[str, str],
) -> None:
    # Only test mode has an endpoint.
    endpoint_id = await endpoint(client, sim, "EP_TEST_ONLY", None)
    url = f"{sim.url}/api/webhook/pg/EP_TEST_ONLY"
    before = await everything(pool)
    body = {**SEED_REQUEST, "orderId": "ORD_NAMED", "echo": {}, "webhookUrl": url}
    await problem(await client.post(PAY, json=body, headers=live), 422, "webhookUrl")
    assert await everything(pool) == before

    # Without a webhookUrl, the live payment goes to the operator's default receiver, not to
    # test mode's newest endpoint; the test payment goes to that endpoint.
    tids = {
        mode: await pay(client, f"ORD_DEFAULT_{mode}", headers)
        for mode, headers in (("test", None), ("live", live))
    }
    rows = {
        r["tid"]: (r["endpoint_id"], r["webhook_url"])
        for r in await pool.fetch("SELECT tid, endpoint_id, webhook_url FROM payment_processes")
    }
    assert rows[tids["test"]] == (endpoint_id, url)
    assert rows[tids["live"]] == (None, str(settings.default_webhook_url))
    resp = await client.post(PAY, json={**body, "orderId": "ORD_NAMED_TEST"})
    assert resp.status == 202, await resp.text()


# --- 2. lists ------------------------------------------------------------------------------


async def _walk(client: Client, path: str, item: str, field: str, headers: Headers) -> list[Any]:
    """Every entry of a paginated list, one per page."""
    seen: list[Any] = []
    after = 0
    for _ in range(20):
        resp = await client.get(path, params={"limit": "1", "after": str(after)}, headers=headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        seen += [entry[field] for entry in page[item]]
        if page["next"] is None:
            return seen
        after = page["next"]
    raise AssertionError(f"{path} did not end: {seen}")


async def _history(client: Client, headers: Headers) -> list[dict[str, Any]]:
    """Every item of the caller's history, page by page."""
    items: list[dict[str, Any]] = []
    params = {"limit": "2"}
    for _ in range(20):
        resp = await client.get(HISTORY, params=params, headers=headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        items += page["items"]
        if page["next"] is None:
            return items
        params = {"limit": "2", "cursor": page["next"]}
    raise AssertionError(f"the history did not end: {items}")


async def test_lists_show_only_the_callers_mode(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    api_key: str,
    live: dict[str, str],
) -> None:
    keys: dict[str, Headers] = {"test": None, "live": live}
    worlds: dict[str, World] = {}
    extra: dict[str, tuple[str, str]] = {}
    # Interleaved, so the two modes' ids alternate and paging would mix them if it could.
    for mode in MODES:
        worlds[mode] = await build(client, pool, repo, settings, sim, mode, keys[mode])
    for mode in MODES:
        open_tid = await unresolved_payment(client, pool, f"ORD_U_{mode}", keys[mode])
        canceled = await pay(client, f"ORD_C_{mode}", keys[mode])
        resp = await client.post(f"/api/payments/{canceled}/cancel", headers=keys[mode])
        assert resp.status == 200, await resp.text()
        extra[mode] = (open_tid, canceled)
    own_keys = {
        "test": {await key_id(pool, api_key, settings), worlds["test"].key},
        "live": {await key_id(pool, live["Authorization"][7:], settings), worlds["live"].key},
    }

    for mode in MODES:
        w, (open_tid, canceled), headers = worlds[mode], extra[mode], keys[mode]
        history = {(i["kind"], i["tid"], i["refundId"]) for i in await _history(client, headers)}
        assert history == {
            ("payment", w.pending, None),
            ("payment", w.captured, None),
            ("payment", w.dead_tid, None),
            ("payment", open_tid, None),
            ("cancel", canceled, None),
            ("refund", w.captured, w.refund),
        }, mode
        assert await _walk(client, DEAD, "deliveries", "id", headers) == [w.delivery]
        assert await _walk(client, UNRESOLVED, "payments", "tid", headers) == [open_tid]
        listed = (await (await client.get(KEYS, headers=headers)).json())["keys"]
        assert {k["id"] for k in listed} == own_keys[mode]
        assert {k["mode"] for k in listed} == {mode}
        found = (await (await client.get(ENDPOINTS, headers=headers)).json())["endpoints"]
        assert [(e["id"], e["mode"]) for e in found] == [(w.endpoint, mode)]

    # A history cursor is bound to its mode: the other mode's key cannot page with it.
    first = await (await client.get(HISTORY, params={"limit": "1"})).json()
    assert first["next"] is not None
    resp = await client.get(HISTORY, params={"limit": "1", "cursor": first["next"]}, headers=live)
    await problem(resp, 422, "cursor")

    # Every row records the mode of the key that made it.
    for mode in MODES:
        w = worlds[mode]
        for tid in (w.pending, w.captured, w.dead_tid, *extra[mode]):
            assert await mode_of(pool, tid) == mode
        rows = await pool.fetch(
            "SELECT e.mode FROM payment_events e JOIN payment_processes p ON p.id = e.payment_id"
            " WHERE p.mode = $1",
            mode,
        )
        assert rows and {r["mode"] for r in rows} == {mode}
        assert (
            await pool.fetchval("SELECT mode FROM refunds WHERE public_id = $1", w.refund) == mode
        )
        assert (
            await pool.fetchval("SELECT mode FROM webhook_endpoints WHERE id = $1", w.endpoint)
            == mode
        )
        assert await pool.fetchval("SELECT mode FROM api_keys WHERE id = $1", w.key) == mode


# --- 3. minted keys ------------------------------------------------------------------------


async def test_a_key_mints_keys_of_its_own_mode_only(
    client: Client, pool: asyncpg.Pool, live: dict[str, str]
) -> None:
    keys: dict[str, Headers] = {"test": None, "live": live}
    tids = {mode: await pay(client, f"ORD_{mode}", keys[mode]) for mode in MODES}
    before = await everything(pool)
    for asking, other in (("test", "live"), ("live", "test")):
        body = await problem(
            await client.post(KEYS, json={"mode": other}, headers=keys[asking]), 403, "mode"
        )
        assert body["type"] == "/problems/mode-mismatch", body
    assert await everything(pool) == before

    for mode in MODES:
        for request in ({"mode": mode}, {}, None):
            resp = await client.post(KEYS, json=request, headers=keys[mode])
            assert resp.status == 201, await resp.text()
            issued = await resp.json()
            assert issued["mode"] == mode and KEY_RE.match(issued["key"])
            assert issued["key"].startswith(f"sk_{mode}_")
            assert (
                await pool.fetchval("SELECT mode FROM api_keys WHERE id = $1", issued["id"]) == mode
            )
            # The minted key acts in its mode: it sees that mode's payment, not the other's.
            minted = bearer(issued["key"])
            other = "live" if mode == "test" else "test"
            assert (await client.get(LOOKUP.format(tids[mode]), headers=minted)).status == 200
            await problem(await client.get(LOOKUP.format(tids[other]), headers=minted), 404)
        # A roll keeps the mode too.
        resp = await client.post(ROLL.format(issued["id"]), headers=keys[mode])
        assert resp.status == 201, await resp.text()
        new = (await resp.json())["new"]
        assert new["mode"] == mode and new["key"].startswith(f"sk_{mode}_")


async def test_keys_are_capped_per_merchant_and_mode(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
    api_key: str,
    live: dict[str, str],
) -> None:
    capped = await aiohttp_client(
        create_app(tuned(settings, max_api_keys=3)), headers=bearer(api_key)
    )
    keys: dict[str, Headers] = {"test": None, "live": live}
    for mode in MODES:
        # One key of each mode exists already (the fixtures'): two more fit.
        issued = []
        for _ in range(2):
            resp = await capped.post(KEYS, headers=keys[mode])
            assert resp.status == 201, await resp.text()
            issued.append((await resp.json())["id"])
        before = await everything(pool)
        body = await problem(await capped.post(KEYS, headers=keys[mode]), 409)
        assert body["type"] == "/problems/limit-reached" and body["limit"] == 3, body
        assert await everything(pool) == before
        count = await pool.fetchval("SELECT count(*) FROM api_keys WHERE mode = $1", mode)
        assert count == 3
        # A revoked key no longer counts.
        resp = await capped.delete(REVOKE.format(issued[0]), headers=keys[mode])
        assert resp.status == 200, await resp.text()
        resp = await capped.post(KEYS, headers=keys[mode])
        assert resp.status == 201, await resp.text()


# A count and an insert in one statement would let concurrent twins all see the count under
# the cap: the repository takes the merchant's row lock first (lock_merchant).
async def test_concurrent_issues_do_not_pass_the_key_cap(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, api_key: str
) -> None:
    capped = await aiohttp_client(
        create_app(tuned(settings, max_api_keys=3)), headers=bearer(api_key)
    )
    answers = await asyncio.gather(*(capped.post(KEYS) for _ in range(12)))
    assert sorted(r.status for r in answers) == [201] * 2 + [409] * 10
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE mode = 'test'") == 3


# --- 4. settling by hand ---------------------------------------------------------------------


async def _status(pool: asyncpg.Pool, tid: str) -> str:
    found: str = await pool.fetchval("SELECT status FROM payment_processes WHERE tid = $1", tid)
    return found


async def test_settling_by_hand_is_for_pending_test_payments_only(
    client: Client, pool: asyncpg.Pool, repo: Repository, live: dict[str, str]
) -> None:
    # Claimed by a worker: it may be charging at the acquirer right now.
    processing = await pay(client, "ORD_PROCESSING")
    [claimed] = await repo.payments.claim_pending("worker-1", 10, 30)
    assert claimed.tid == processing
    unknown = await unresolved_payment(client, pool, "ORD_UNRESOLVED")
    live_tid = await pay(client, "ORD_LIVE", live)

    before = await everything(pool)
    for status in ("SUCCESS", "FAILED"):
        for tid, current in ((processing, "PROCESSING"), (unknown, "UNRESOLVED")):
            body = await problem(await client.post(TRIGGER.format(tid, status)), 409, "status")
            assert body["currentStatus"] == current, body
            assert body["type"] == "/problems/state-conflict"
        # A live payment moves money: no key settles it by hand, and the test key cannot see it.
        body = await problem(await client.post(TRIGGER.format(live_tid, status), headers=live), 403)
        assert "sk_test_" in body["detail"]
        await problem(await client.post(TRIGGER.format(live_tid, status)), 404)
    assert await everything(pool) == before
    row = await pool.fetchrow(
        "SELECT status, lease_owner FROM payment_processes WHERE tid = $1", processing
    )
    assert (row["status"], row["lease_owner"]) == ("PROCESSING", "worker-1")
    assert await _status(pool, unknown) == "UNRESOLVED"
    assert await _status(pool, live_tid) == "PENDING"

    # A PENDING test payment is settled, with its webhook, by the key that asked.
    for status, order in (("SUCCESS", "ORD_OK"), ("FAILED", "ORD_KO")):
        tid = await pay(client, order)
        resp = await client.post(TRIGGER.format(tid, status))
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["action"] == "settled"
        row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
        assert row["status"] == status and row["last_actor"].startswith("merchant:sk_test_")
        assert (row["approval_no"] is not None) == (status == "SUCCESS")
        hooks = await pool.fetch(
            "SELECT event_status FROM webhook_deliveries WHERE payment_id = $1", row["id"]
        )
        assert [h["event_status"] for h in hooks] == [status]


async def test_resends_are_limited_per_payment_in_both_modes(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
    repo: Repository,
    api_key: str,
    live: dict[str, str],
) -> None:
    limited = await aiohttp_client(
        create_app(tuned(settings, webhook_resends_per_window=2)), headers=bearer(api_key)
    )

    async def deliveries(tid: str) -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries d JOIN payment_processes p"
                " ON p.id = d.payment_id WHERE p.tid = $1",
                tid,
            )
        )

    # A live payment settled by a worker (its own webhook is the first of the window).
    live_tid = await pay(limited, "ORD_LIVE", live)
    [claimed] = await repo.payments.claim_pending("worker-1", 10, 30)
    assert claimed.tid == live_tid
    assert await repo.payments.settle(
        "worker-1", [Outcome(claimed.id, Status.SUCCESS, approval_no="AP9")]
    )
    # A test payment settled by hand (likewise).
    test_tid = await pay(limited, "ORD_TEST")
    resp = await limited.post(TRIGGER.format(test_tid, "SUCCESS"))
    assert resp.status == 202 and (await resp.json())["action"] == "settled"

    for tid, headers in ((live_tid, live), (test_tid, None)):
        resp = await limited.post(TRIGGER.format(tid, "SUCCESS"), headers=headers)
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["action"] == "resent"
        before = await everything(pool)
        refused = await limited.post(TRIGGER.format(tid, "SUCCESS"), headers=headers)
        body = await problem(refused, 429)
        assert body["type"] == "/problems/resend-limited", body
        assert int(refused.headers["Retry-After"]) >= 1
        assert await everything(pool) == before
        assert await deliveries(tid) == 2

    # Per payment: another one is not limited by these.
    other = await pay(limited, "ORD_OTHER")
    resp = await limited.post(TRIGGER.format(other, "SUCCESS"))
    assert resp.status == 202, await resp.text()
    # Once the window has passed (as if it had: the deliveries are aged), resends work again.
    await pool.execute(
        "UPDATE webhook_deliveries SET created_at = created_at - make_interval(secs => $1 + 1)",
        settings.webhook_resend_window_seconds,
    )
    resp = await limited.post(TRIGGER.format(test_tid, "SUCCESS"))
    assert resp.status == 202, await resp.text()
    assert await deliveries(test_tid) == 3


# The same for resends: the payment's row is locked first (lock_payment).
async def test_concurrent_resends_do_not_pass_the_limit(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, api_key: str
) -> None:
    limited = await aiohttp_client(
        create_app(tuned(settings, webhook_resends_per_window=2)), headers=bearer(api_key)
    )
    tid = await pay(limited, "ORD_RACE")
    resp = await limited.post(TRIGGER.format(tid, "SUCCESS"))
    assert resp.status == 202, await resp.text()
    answers = await asyncio.gather(
        *(limited.post(TRIGGER.format(tid, "SUCCESS")) for _ in range(12))
    )
    assert sorted(r.status for r in answers) == [202] + [429] * 11
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 2


# --- 5. one orderId per mode ----------------------------------------------------------------


async def test_the_same_order_id_is_one_payment_per_mode(
    client: Client, pool: asyncpg.Pool, live: dict[str, str]
) -> None:
    body = {**SEED_REQUEST, "orderId": "ORD_SHARED", "echo": {"orderNumber": "ORD_SHARED"}}
    first = await client.post(PAY, json=body, headers=live)
    assert first.status == 202, await first.text()
    live_tid = (await first.json())["transactionId"]

    # The test key replaying the live order's body makes a test payment, and never shows the
    # live one (not in the 202, not in the replay's 200, not in a conflict's 409).
    made = await client.post(PAY, json=body)
    assert made.status == 202, await made.text()
    test_tid = (await made.json())["transactionId"]
    assert test_tid != live_tid and live_tid not in await made.text()
    replay = await client.post(PAY, json=body)
    assert replay.status == 200, await replay.text()
    assert (await replay.json())["transactionId"] == test_tid
    assert live_tid not in await replay.text()
    conflict = await problem(await client.post(PAY, json={**body, "amount": 20000}), 409, "orderId")
    assert conflict["transactionId"] == test_tid and live_tid not in json.dumps(conflict)
    # And the live key still has its own.
    again = await client.post(PAY, json=body, headers=live)
    assert again.status == 200 and (await again.json())["transactionId"] == live_tid

    rows = await pool.fetch(
        "SELECT tid, mode FROM payment_processes WHERE order_id = $1 ORDER BY id", "ORD_SHARED"
    )
    assert [(r["tid"], r["mode"]) for r in rows] == [(live_tid, "live"), (test_tid, "test")]
    await problem(await client.get(LOOKUP.format(live_tid)), 404)
    await problem(await client.get(LOOKUP.format(test_tid), headers=live), 404)

    # A refund's Idempotency-Key is scoped by mode the same way.
    for tid in (live_tid, test_tid):
        await settled_by_engine(pool, tid)
    live_refund = await refund(client, live_tid, "REFUND_SHARED", live)
    test_refund = await refund(client, test_tid, "REFUND_SHARED", None)
    assert live_refund != test_refund
    modes = await pool.fetch("SELECT public_id, mode FROM refunds ORDER BY id")
    assert [(r["public_id"], r["mode"]) for r in modes] == [
        (live_refund, "live"),
        (test_refund, "test"),
    ]


# --- 6. providers ----------------------------------------------------------------------------


async def test_test_payments_reach_the_test_acquirer_and_live_ones_the_live_acquirer(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
    live: dict[str, str],
) -> None:
    keys: dict[str, Headers] = {"test": None, "live": live}
    await acquirer_config(http, sim, success_rate=1.0)
    async with running(
        SimulatorSettings(port=0, seed="test-acquirer", success_rate=1.0)
    ) as test_sim:
        worker = Worker(
            tuned(settings, test_acquirer_url=f"{test_sim.url}/acquirer"),
            repo,
            http,
            owner="worker-1",
        )
        # The same order ids in both modes: only the mode tells where each goes.
        tids = {
            mode: [await pay(client, f"ORD_{i}", keys[mode]) for i in range(3)] for mode in MODES
        }

        async def all_settled() -> bool:
            await worker.payments_pass()
            return bool(
                await pool.fetchval("SELECT bool_and(status = 'SUCCESS') FROM payment_processes")
            )

        settled: Check = all_settled
        await wait_until(settled, what="every payment settled")
        charged = {"live": await ledger(http, sim), "test": await ledger(http, test_sim)}
        for mode in MODES:
            assert sorted(c["reference"] for c in charged[mode]) == sorted(tids[mode]), mode

        # Refunds follow their payment's mode: the test acquirer holds only test charges, so a
        # live refund sent there would be rejected, and one sent to the live acquirer listed.
        refund_ids = {
            mode: await refund(client, tids[mode][0], f"R_{mode}", keys[mode]) for mode in MODES
        }

        async def all_refunded() -> bool:
            await worker.refunds_pass()
            return bool(await pool.fetchval("SELECT bool_and(status = 'REFUNDED') FROM refunds"))

        refunded: Check = all_refunded
        await wait_until(refunded, what="every refund settled")
        for mode, at in (("live", sim), ("test", test_sim)):
            async with http.get(f"{at.url}/acquirer/refunds") as resp:
                returned = (await resp.json())["refunds"]
            assert [(r["reference"], r["paymentReference"]) for r in returned] == [
                (refund_ids[mode], tids[mode][0])
            ], mode


# --- 7. Atom's callback ----------------------------------------------------------------------

# Test mode's Atom credentials, all unlike the live ones (the settings' defaults).
TEST_ATOM = {
    "test_atom_merch_id": "900002",
    "test_atom_password": "test-mode-atom-password",
    "test_atom_req_hash_key": "test-mode-atom-req-hash-key",
    "test_atom_res_hash_key": "test-mode-atom-res-hash-key",
    "test_atom_req_enc_key": "7E57A70A7011EC0DE0000000000A71E",
    "test_atom_res_enc_key": "7E57A70A7011EC0DE0000000000A7FE",
}


def sealed(creds: AtomCredentials, tid: str, amount: int, currency: str = "KRW") -> dict[str, str]:
    """An approval callback for `tid`, signed and encrypted as Atom does with `creds`."""
    atom_txn_id = "11112222333344"
    fields = (atom_txn_id, tid, atom.APPROVED, str(amount), currency)
    answer = {
        "merchTxnId": tid,
        "atomTxnId": atom_txn_id,
        "statusCode": atom.APPROVED,
        "amount": str(amount),
        "currency": currency,
        "signature": atom_crypto.response_signature(creds, *fields),
    }
    key = atom_crypto.derive_key(creds.res_enc_key)
    return {"encData": atom_crypto.encrypt(key, json.dumps(answer).encode())}


async def test_an_atom_callback_settles_only_payments_of_the_mode_that_sealed_it(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
    api_key: str,
    live: dict[str, str],
) -> None:
    apart = tuned(settings, **TEST_ATOM)
    creds = {mode: atom.credentials(apart, mode) for mode in MODES}
    assert creds["test"].res_enc_key != creds["live"].res_enc_key
    client = await aiohttp_client(create_app(apart), headers=bearer(api_key))
    keys: dict[str, Headers] = {"test": None, "live": live}
    amount = SEED_REQUEST["amount"]
    assert isinstance(amount, int)
    tids = {
        mode: await pay(client, f"ORD_ATOM_{mode}", keys[mode], provider="atom") for mode in MODES
    }
    anonymous = {"Authorization": ""}  # the callback's own seal is what authenticates it

    before = await everything(pool)
    nobodys = await client.post(
        CALLBACK, json=sealed(creds["test"], UNKNOWN_TID, amount), headers=anonymous
    )
    unknown = _comparable(nobodys, await problem(nobodys, 404, "encData"), UNKNOWN_TID)
    for sealer, payment in (("test", "live"), ("live", "test")):
        resp = await client.post(
            CALLBACK, json=sealed(creds[sealer], tids[payment], amount), headers=anonymous
        )
        # Verified, but for the other mode: as unknown as a tid nobody has.
        body = await problem(resp, 404, "encData")
        assert _comparable(resp, body, tids[payment]) == unknown
    assert await everything(pool) == before
    assert {mode: await _status(pool, tids[mode]) for mode in MODES} == {
        "test": "PENDING",
        "live": "PENDING",
    }

    # Each mode's own credentials settle its own payment.
    for mode in MODES:
        resp = await client.post(
            CALLBACK, json=sealed(creds[mode], tids[mode], amount), headers=anonymous
        )
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"tid": tids[mode], "status": "SUCCESS", "settled": True}
        assert await _status(pool, tids[mode]) == "SUCCESS"
