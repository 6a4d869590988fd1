"""Merchant authentication and isolation over HTTP, on a real database.

Every /api/ call needs `Authorization: Bearer <key>`; what a key reads and writes is its
merchant's alone, and another merchant's ids look exactly like ids nobody has. Keys are
issued, listed (prefixes only), rolled with a grace period and revoked by their merchant.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import string
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from api import auth
from api.auth import PUBLIC
from config.settings import Settings
from engine.merchants import keys
from engine.store.repository import Repository
from tests.conftest import MID, SEED_REQUEST
from tests.merchant_cli import bearer, create_merchant, demo
from tests.waiting import wait_until

PAY = "/api/payment"
LOOKUP = "/api/payment/transaction/{}"
HOOKS = "/api/payment/transaction/{}/webhooks"
TRIGGER = "/api/payment/webhook/trigger/{}?status={}"
DEAD = "/api/webhooks/dead"
UNRESOLVED = "/api/payment/unresolved"
REDELIVER = "/api/webhooks/{}/redeliver"
KEYS = "/api/keys"
ROLL = "/api/keys/{}/roll"
REVOKE = "/api/keys/{}"
PROBLEM = "application/problem+json"
CHALLENGE = 'Bearer realm="api"'
KEY_RE = re.compile(r"^sk_(live|test)_[0-9A-Za-z]{43}$")
KEY_FIELDS = {"id", "mode", "kind", "prefix", "createdAt", "lastUsedAt", "expiresAt", "revokedAt"}
OTHER = "other_mid"
# Nothing listens on the discard port: a delivery there can only fail.
CLOSED_HOOK = "http://127.0.0.1:9/hook"
# Ids nobody has, of the same shapes as real ones.
UNKNOWN_TID = "DUMMY_20260101_99999999"
UNKNOWN_ID = 987_654_321

Client = TestClient[Any, Any]


# --- helpers -------------------------------------------------------------------------------


def failures(client: Client) -> Counter[str]:
    """The app's count of refused keys, by reason."""
    assert client.app is not None
    return client.app[auth.FAILURES]


async def problem(resp: aiohttp.ClientResponse, status: int, field: str | None = None) -> Any:
    """Assert an RFC 9457 problem with this status (and field); return its body."""
    text = await resp.text()
    assert resp.status == status, text[:500]
    assert resp.content_type == PROBLEM, (resp.content_type, text)
    body = json.loads(text)
    assert body["status"] == status and body["title"] and body["detail"], body
    if field is not None:
        assert body.get("field") == field, body
    return body


async def unauthorized(resp: aiohttp.ClientResponse, reason: str) -> Any:
    """Assert the 401 of a refused key, with its challenge and reason."""
    body = await problem(resp, 401, "Authorization")
    assert resp.headers["WWW-Authenticate"] == CHALLENGE
    assert body["type"] == "/problems/unauthorized"
    assert body["reason"] == reason, body
    return body


async def table(pool: asyncpg.Pool, name: str, where: str = "true", *args: Any) -> list[str]:
    """Rows of a table as text, by id: equal lists mean nothing changed."""
    rows = await pool.fetch(f"SELECT t::text AS row FROM {name} t WHERE {where} ORDER BY id", *args)
    return [r["row"] for r in rows]


async def everything(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Every row the API can write."""
    names = ("payment_processes", "webhook_deliveries", "payment_events", "merchants")
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


async def merchants_rows(pool: asyncpg.Pool, mid: str) -> dict[str, list[str]]:
    """Every row that belongs to merchant `mid`, as text."""
    return {
        "payments": await table(pool, "payment_processes", "mid = $1", mid),
        "deliveries": await table(
            pool,
            "webhook_deliveries",
            "payment_id IN (SELECT id FROM payment_processes WHERE mid = $1)",
            mid,
        ),
        "events": await table(
            pool,
            "payment_events",
            "payment_id IN (SELECT id FROM payment_processes WHERE mid = $1)",
            mid,
        ),
        "keys": await table(
            pool, "api_keys", "merchant_id = (SELECT id FROM merchants WHERE mid = $1)", mid
        ),
    }


async def pay(
    client: Client, order_id: str, headers: dict[str, str] | None = None, **fields: Any
) -> str:
    """A new payment of the caller's merchant (echo without a mid); returns its tid."""
    body = {**SEED_REQUEST, "orderId": order_id, "echo": {"orderNumber": order_id}, **fields}
    resp = await client.post(PAY, json=body, headers=headers)
    assert resp.status == 202, await resp.text()
    tid: str = (await resp.json())["transactionId"]
    return tid


async def dead_delivery(
    client: Client, pool: asyncpg.Pool, order_id: str, headers: dict[str, str] | None = None
) -> tuple[str, int]:
    """A settled payment whose webhook used up its attempts; returns (tid, delivery id)."""
    tid = await pay(client, order_id, headers)
    resp = await client.post(TRIGGER.format(tid, "SUCCESS"), headers=headers)
    assert resp.status == 202, await resp.text()
    # As the worker leaves it after its last attempt (the port is closed, it would fail).
    delivery_id: int = await pool.fetchval(
        "UPDATE webhook_deliveries d SET status = 'DEAD', attempts = 8, last_error = 'refused'"
        " FROM payment_processes p WHERE p.id = d.payment_id AND p.tid = $1 RETURNING d.id",
        tid,
    )
    return tid, delivery_id


async def unresolved_payment(
    client: Client, pool: asyncpg.Pool, order_id: str, headers: dict[str, str] | None = None
) -> str:
    """A payment whose outcome is not known, as the worker leaves it; returns its tid."""
    tid = await pay(client, order_id, headers)
    await pool.execute(
        "UPDATE payment_processes SET status = 'UNRESOLVED', unresolved_reason = 'timeout',"
        " outcome_unknown_since = now(), attempts = 3 WHERE tid = $1",
        tid,
    )
    return tid


async def key_id(pool: asyncpg.Pool, key: str, settings: Settings) -> int:
    """The id of the stored key whose hash is this key's."""
    hashed = keys.key_hash(settings.api_key_secret, key)
    found: int = await pool.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", hashed)
    return found


@pytest.fixture
async def other(repo: Repository, settings: Settings, api_key: str) -> dict[str, str]:
    """The Authorization header of a test key of another merchant (after MID's key)."""
    await repo.merchants.create_merchant(OTHER, "Other merchant")
    return bearer((await repo.merchants.issue_key(OTHER, "test", settings.api_key_secret)).key)


# --- 401: no usable key ----------------------------------------------------------------------


def random_key(mode: str = "test") -> str:
    """A well-formed key nobody was issued."""
    return keys.new_key("test" if mode == "test" else "live")


MALFORMED: dict[str, str] = {
    "wrong-scheme-basic": "Basic dXNlcjpwYXNz",
    "wrong-scheme-token": "Token {key}",
    "no-scheme": "{key}",
    "scheme-only": "Bearer",
    "empty-key": "Bearer ",
    "not-a-key": "Bearer nope",
    "unknown-mode": "Bearer sk_prod_" + "a" * 43,
    "42-characters": "Bearer sk_test_" + "a" * 42,
    "44-characters": "Bearer sk_test_" + "a" * 44,
    "not-base62": "Bearer sk_test_" + "-" * 43,
    "two-keys": "Bearer {key} {key}",
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_or_wrong_scheme_is_401_and_stores_nothing(
    client: Client, http: aiohttp.ClientSession, pool: asyncpg.Pool, api_key: str, header: str
) -> None:
    before = await everything(pool)
    # A plain session: the header sent is exactly this one (the client's default is a key).
    sent = {"Authorization": header.format(key=api_key)}
    async with http.post(client.make_url(PAY), json=SEED_REQUEST, headers=sent) as resp:
        await unauthorized(resp, "malformed")
    assert failures(client) == Counter({"malformed": 1})
    assert await everything(pool) == before


@pytest.mark.parametrize("header", ["", "   "], ids=["empty", "blank"])
async def test_empty_header_counts_as_missing(
    client: Client, http: aiohttp.ClientSession, pool: asyncpg.Pool, header: str
) -> None:
    before = await everything(pool)
    sent = {"Authorization": header}
    async with http.post(client.make_url(PAY), json=SEED_REQUEST, headers=sent) as resp:
        await unauthorized(resp, "missing")
    assert failures(client) == Counter({"missing": 1})
    assert await everything(pool) == before


async def test_missing_key_is_401_on_every_api_route(
    client: Client, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    assert client.app is not None
    routes = [
        (route.method, resource.canonical)
        for resource in client.app.router.resources()
        for route in resource
        if route.method != "HEAD"
        and resource.canonical.startswith("/api/")
        # A provider's callback is authenticated by the provider's signature, not a key.
        and resource.canonical not in PUBLIC
    ]
    assert len(routes) >= 11, routes  # the payments' and the keys' routes at least
    before = await everything(pool)
    for method, path in routes:
        # Any value fits each path parameter: the key is checked before the route's handler.
        url = client.make_url(re.sub(r"\{[^}]+\}", "1", path))
        async with http.request(method, url, json=SEED_REQUEST) as resp:
            await unauthorized(resp, "missing")
    assert failures(client) == Counter({"missing": len(routes)})
    assert await everything(pool) == before
    # The public paths stay public.
    for path in ("/health", "/openapi.json"):
        async with http.get(client.make_url(path)) as resp:
            assert resp.status == 200, path
    assert failures(client) == Counter({"missing": len(routes)})


async def test_scheme_is_case_insensitive(client: Client, api_key: str) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        resp = await client.get(KEYS, headers={"Authorization": f"{scheme} {api_key}"})
        assert resp.status == 200, await resp.text()
    assert failures(client) == Counter()


async def test_unknown_key_is_401(client: Client, pool: asyncpg.Pool, api_key: str) -> None:
    before = await everything(pool)
    # Well formed, never issued: of either mode, and one character off a real key.
    off_by_one = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
    for key in (random_key("test"), random_key("live"), off_by_one):
        await unauthorized(
            await client.post(PAY, json=SEED_REQUEST, headers=bearer(key)), "unknown"
        )
    assert failures(client) == Counter({"unknown": 3})
    assert await everything(pool) == before


async def test_key_of_another_secret_is_unknown(
    client: Client, repo: Repository, pool: asyncpg.Pool
) -> None:
    # A key hashed under another server secret was never issued by this one.
    foreign = await repo.merchants.issue_key(MID, "test", "some-other-server-secret-0123456789")
    before = await everything(pool)
    await unauthorized(await client.get(KEYS, headers=bearer(foreign.key)), "unknown")
    assert await everything(pool) == before


async def test_expired_key_is_401(
    client: Client, repo: Repository, pool: asyncpg.Pool, settings: Settings
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = await repo.merchants.issue_key(MID, "test", settings.api_key_secret, expires_at=past)
    before = await everything(pool)
    await unauthorized(
        await client.post(PAY, json=SEED_REQUEST, headers=bearer(expired.key)), "expired"
    )
    await unauthorized(await client.get(KEYS, headers=bearer(expired.key)), "expired")
    assert failures(client) == Counter({"expired": 2})
    assert await everything(pool) == before


async def test_revoked_key_is_401_at_once(
    client: Client, repo: Repository, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await repo.merchants.issue_key(MID, "test", settings.api_key_secret)
    resp = await client.get(KEYS, headers=bearer(issued.key))
    assert resp.status == 200, await resp.text()

    resp = await client.delete(REVOKE.format(issued.id))
    assert resp.status == 200, await resp.text()
    revoked = await resp.json()
    assert revoked["id"] == issued.id and revoked["revokedAt"] is not None
    before = await everything(pool)
    # The very next request with it is refused; nothing it asks for happens.
    await unauthorized(
        await client.post(PAY, json=SEED_REQUEST, headers=bearer(issued.key)), "revoked"
    )
    await unauthorized(
        await client.delete(REVOKE.format(issued.id), headers=bearer(issued.key)), "revoked"
    )
    assert failures(client) == Counter({"revoked": 2})
    assert await everything(pool) == before
    # Revoked once is revoked: a second revoke finds no key to revoke.
    await problem(await client.delete(REVOKE.format(issued.id)), 404)
    # The caller's own key is untouched.
    assert (await client.get(KEYS)).status == 200


async def test_revoking_the_key_in_use_stops_it_for_the_next_request(
    client: Client, pool: asyncpg.Pool, api_key: str, settings: Settings
) -> None:
    own = await key_id(pool, api_key, settings)
    resp = await client.delete(REVOKE.format(own))
    assert resp.status == 200, await resp.text()
    await unauthorized(await client.get(KEYS), "revoked")
    await unauthorized(await client.post(PAY, json=SEED_REQUEST), "revoked")
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 0


async def test_a_key_revoked_elsewhere_stops_within_the_cache_time(
    client: Client, repo: Repository, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Another web process (here: the database directly) revokes a key this one remembers."""
    issued = await repo.merchants.issue_key(MID, "test", settings.api_key_secret)
    assert (await client.get(KEYS, headers=bearer(issued.key))).status == 200
    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", issued.id)
    started = datetime.now(UTC)

    async def refused() -> bool:
        return (await client.get(KEYS, headers=bearer(issued.key))).status == 401

    await wait_until(refused, timeout=10, what="the revoked key to be refused")
    assert datetime.now(UTC) - started < timedelta(seconds=settings.auth_cache_seconds + 2)
    assert failures(client)["revoked"] >= 1


async def test_a_remembered_key_is_checked_for_expiry_on_every_request(
    client: Client, repo: Repository, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await repo.merchants.issue_key(MID, "test", settings.api_key_secret)
    # Expires half a second from now; the first use puts it in the cache.
    await pool.execute(
        "UPDATE api_keys SET expires_at = now() + interval '500 ms' WHERE id = $1", issued.id
    )
    assert (await client.get(KEYS, headers=bearer(issued.key))).status == 200
    expires = await pool.fetchval("SELECT expires_at FROM api_keys WHERE id = $1", issued.id)

    async def refused() -> bool:
        return (await client.get(KEYS, headers=bearer(issued.key))).status == 401

    await wait_until(refused, timeout=10, what="the expired key to be refused")
    assert datetime.now(UTC) >= expires
    assert failures(client)["expired"] >= 1


def test_the_key_cache_forgets_after_its_time_and_never_grows_past_its_bound() -> None:
    from engine.models import AuthKey

    key = AuthKey(
        id=1,
        mid=MID,
        mode="test",
        prefix="sk_test_abcd",
        expires_at=None,
        revoked_at=None,
        active=True,
    )
    cache = auth.KeyCache(ttl=60)
    cache.put(b"k", key)
    assert cache.get(b"k") is key and cache.get(b"other") is None
    stale = auth.KeyCache(ttl=0.0)
    stale.put(b"k", key)  # a zero time remembers nothing
    assert stale.get(b"k") is None
    for i in range(auth.KeyCache.MAX_ENTRIES + 5):
        cache.put(i.to_bytes(4, "big"), key)
    assert len(cache) <= auth.KeyCache.MAX_ENTRIES


# --- keys: format, issue, list ---------------------------------------------------------------


async def test_1000_keys_are_well_formed_unique_and_stored_only_as_a_hash(
    repo: Repository, pool: asyncpg.Pool, settings: Settings, api_key: str
) -> None:
    issued = [
        await repo.merchants.issue_key(MID, "live" if i % 2 else "test", settings.api_key_secret)
        for i in range(1000)
    ]
    whole = [k.key for k in issued]
    assert all(KEY_RE.match(k) for k in whole), [k for k in whole if not KEY_RE.match(k)][:3]
    assert all(k.key.startswith(f"sk_{k.mode}_") for k in issued)
    assert Counter(k.mode for k in issued) == {"live": 500, "test": 500}
    assert len(set(whole)) == 1000
    # 32 random bytes in Base62: no two share even their first 12 random characters, and
    # every one of the 62 symbols turns up.
    assert len({k.split("_")[2][:12] for k in whole}) == 1000
    assert set("".join(k.split("_")[2] for k in whole)) == set(string.digits + string.ascii_letters)
    assert all(k.prefix == keys.display_prefix(k.key) == k.key[:14] for k in issued)
    assert all(keys.parse_key(k) in ("live", "test") for k in whole)

    rows = await pool.fetch("SELECT id, key_hash, a::text AS everything FROM api_keys a")
    stored = {bytes(r["key_hash"]) for r in rows}
    assert len(stored) == len(rows) == 1001  # and the fixture's key
    by_id = {r["id"]: r for r in rows}
    for k in issued:
        assert bytes(by_id[k.id]["key_hash"]) == keys.key_hash(settings.api_key_secret, k.key)
    # The key itself is nowhere in the table: its random part is in no column.
    text = "\n".join(r["everything"] for r in rows)
    assert not any(k.split("_")[2] in text for k in whole)


async def test_issue_shows_the_key_once_and_the_list_only_prefixes(
    client: Client, pool: asyncpg.Pool, api_key: str
) -> None:
    resp = await client.post(KEYS)
    assert resp.status == 201, await resp.text()
    issued = await resp.json()
    assert set(issued) == {"id", "mode", "kind", "prefix", "key", "createdAt", "expiresAt"}
    assert KEY_RE.match(issued["key"]) and issued["mode"] == "test"  # the caller's mode
    assert issued["prefix"] == keys.display_prefix(issued["key"])
    assert issued["expiresAt"] is None

    # A test key mints test keys only (asking for its own mode is fine).
    before = await table(pool, "api_keys")
    resp = await client.post(KEYS, json={"mode": "live"})
    assert resp.status == 403, await resp.text()
    assert (await resp.json())["field"] == "mode"
    assert await table(pool, "api_keys") == before
    resp = await client.post(KEYS, json={"mode": "test"})
    assert resp.status == 201, await resp.text()
    again = await resp.json()
    assert again["mode"] == "test" and again["key"] != issued["key"]

    # The new keys work at once.
    for key in (issued["key"], again["key"]):
        assert (await client.get(KEYS, headers=bearer(key))).status == 200

    resp = await client.get(KEYS)
    text = await resp.text()
    listed = json.loads(text)["keys"]
    # Newest first; prefixes only: no key is in the answer, not even the caller's own.
    assert [k["id"] for k in listed] == sorted((k["id"] for k in listed), reverse=True)
    assert len(listed) == 3 and all(set(k) == KEY_FIELDS for k in listed)
    assert {k["prefix"] for k in listed} == {
        issued["prefix"],
        again["prefix"],
        keys.display_prefix(api_key),
    }
    for key in (issued["key"], again["key"], api_key):
        assert key.split("_")[2][6:] not in text
    # Nor is it anywhere the database keeps.
    dump = "\n".join(await table(pool, "api_keys"))
    assert issued["key"].split("_")[2] not in dump


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "prod"}, "mode"),
        ({"mode": 1}, "mode"),
        ({"extra": 1}, "extra"),
        ([], "body"),
        ("live", "body"),
    ],
)
async def test_issue_with_a_bad_body_is_422_and_issues_nothing(
    client: Client, pool: asyncpg.Pool, body: Any, field: str
) -> None:
    before = await everything(pool)
    await problem(await client.post(KEYS, json=body), 422, field)
    await problem(
        await client.post(KEYS, data=b"{", headers={"Content-Type": "application/json"}),
        400,
        "body",
    )
    assert await everything(pool) == before


async def test_last_used_at_is_set_by_use_and_written_at_most_once_a_minute(
    client: Client, repo: Repository, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await repo.merchants.issue_key(MID, "test", settings.api_key_secret)

    async def last_used() -> Any:
        listed = (await (await client.get(KEYS)).json())["keys"]
        return next(k for k in listed if k["id"] == issued.id)["lastUsedAt"]

    assert await last_used() is None
    resp = await client.get(KEYS, headers=bearer(issued.key))
    assert resp.status == 200
    first = await last_used()
    assert first is not None
    assert datetime.fromisoformat(first) >= issued.created_at
    # Another use within the minute does not write again.
    assert (await client.get(KEYS, headers=bearer(issued.key))).status == 200
    assert await last_used() == first
    # A minute later it does.
    await pool.execute(
        "UPDATE api_keys SET last_used_at = now() - interval '61 seconds' WHERE id = $1", issued.id
    )
    stale = await last_used()
    client.app[auth.CACHE].clear()  # as after the cache time: the next use looks the key up
    assert (await client.get(KEYS, headers=bearer(issued.key))).status == 200
    assert datetime.fromisoformat(await last_used()) > datetime.fromisoformat(stale)


# --- roll and revoke -------------------------------------------------------------------------


async def test_roll_with_grace_old_key_works_until_the_grace_ends(
    client: Client, pool: asyncpg.Pool, api_key: str, settings: Settings
) -> None:
    old_id = await key_id(pool, api_key, settings)
    resp = await client.post(ROLL.format(old_id), json={"graceSeconds": 1})
    assert resp.status == 201, await resp.text()
    rolled = await resp.json()
    new, old = rolled["new"], rolled["old"]
    assert KEY_RE.match(new["key"]) and new["mode"] == "test" and new["id"] != old_id
    assert old["id"] == old_id and old["revokedAt"] is None
    grace = await pool.fetchval("SELECT expires_at - now() FROM api_keys WHERE id = $1", old_id)
    assert timedelta(0) < grace <= timedelta(seconds=1)

    # The new key works at once; the old one still works during the grace period.
    assert (await client.get(KEYS, headers=bearer(new["key"]))).status == 200
    assert (await client.get(KEYS)).status == 200
    assert failures(client) == Counter()

    async def old_refused() -> bool:
        return (await client.get(KEYS)).status == 401

    await wait_until(old_refused, timeout=10, what="the old key to stop after its grace")
    await unauthorized(await client.get(KEYS), "expired")
    assert failures(client)["expired"] >= 2
    # Expired by the roll, not revoked; and the new key carries on.
    resp = await client.get(KEYS, headers=bearer(new["key"]))
    listed = {k["id"]: k for k in (await resp.json())["keys"]}
    assert listed[old_id]["expiresAt"] is not None and listed[old_id]["revokedAt"] is None
    assert listed[new["id"]]["expiresAt"] is None
    # An expired key cannot be rolled again.
    await problem(await client.post(ROLL.format(old_id), headers=bearer(new["key"])), 404)


async def test_roll_with_zero_grace_stops_the_old_key_at_once(
    client: Client, pool: asyncpg.Pool, api_key: str, settings: Settings
) -> None:
    old_id = await key_id(pool, api_key, settings)
    # No body: graceSeconds defaults to 0.
    resp = await client.post(ROLL.format(old_id))
    assert resp.status == 201, await resp.text()
    new = (await resp.json())["new"]
    await unauthorized(await client.get(KEYS), "expired")
    await unauthorized(await client.post(PAY, json=SEED_REQUEST), "expired")
    assert (await client.get(KEYS, headers=bearer(new["key"]))).status == 200
    resp = await client.post(PAY, json=SEED_REQUEST, headers=bearer(new["key"]))
    assert resp.status == 202, await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 1


@pytest.mark.parametrize(
    "body",
    [
        {"graceSeconds": -1},
        {"graceSeconds": 30 * 24 * 3600 + 1},
        {"graceSeconds": 1.5},
        {"graceSeconds": "1"},
        {"grace": 1},
    ],
)
async def test_roll_with_a_bad_grace_is_422_and_changes_nothing(
    client: Client, pool: asyncpg.Pool, api_key: str, settings: Settings, body: dict[str, Any]
) -> None:
    own = await key_id(pool, api_key, settings)
    before = await everything(pool)
    await problem(await client.post(ROLL.format(own), json=body), 422)
    assert await everything(pool) == before


# --- isolation ---------------------------------------------------------------------------------

# Every endpoint that takes an id: (method, path template, which id, status for its owner).
BY_ID: dict[str, tuple[str, str, str, int]] = {
    "lookup": ("GET", LOOKUP, "tid", 200),
    "webhooks": ("GET", HOOKS, "tid", 200),
    "trigger-success": ("POST", "/api/payment/webhook/trigger/{}?status=SUCCESS", "tid", 202),
    "trigger-failed": ("POST", "/api/payment/webhook/trigger/{}?status=FAILED", "tid", 202),
    "events": ("GET", "/api/payments/{}/events", "tid", 200),
    "refunds": ("GET", "/api/payments/{}/refunds", "tid", 200),
    "cancel": ("POST", "/api/payments/{}/cancel", "tid", 200),
    "redeliver": ("POST", REDELIVER, "delivery", 202),
    "roll-key": ("POST", ROLL, "key", 201),
    "revoke-key": ("DELETE", REVOKE, "key", 200),
}


def _comparable(resp: aiohttp.ClientResponse, body: Any, ident: str) -> tuple[Any, ...]:
    """What a 404 shows, with the id asked for replaced: equal means nothing tells them apart."""
    masked = json.loads(json.dumps(body).replace(ident, "<id>"))
    headers = sorted(k for k in resp.headers if k.lower() not in ("date", "content-length"))
    return resp.status, resp.content_type, headers, masked


@pytest.mark.parametrize("endpoint", BY_ID.values(), ids=BY_ID.keys())
async def test_another_merchants_id_is_404_like_an_unknown_one(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    other: dict[str, str],
    endpoint: tuple[str, str, str, int],
) -> None:
    method, template, kind, owners_status = endpoint
    # MID's things: a payment not final yet, a dead delivery, a second key.
    pending = await pay(client, "ORD_MINE")
    _, delivery = await dead_delivery(client, pool, "ORD_MINE_DEAD")
    spare = await repo.merchants.issue_key(MID, "test", settings.api_key_secret)
    # And the other merchant has its own, so it is a merchant with data, not an empty one.
    await pay(client, "ORD_THEIRS", other)
    mine = {"tid": pending, "delivery": str(delivery), "key": str(spare.id)}[kind]
    unknown = UNKNOWN_TID if kind == "tid" else str(UNKNOWN_ID)

    owner_rows = await merchants_rows(pool, MID)
    before = await everything(pool)
    theirs = await client.request(method, template.format(quote(mine, safe="")), headers=other)
    body = await problem(theirs, 404)
    nobodys = await client.request(method, template.format(unknown), headers=other)
    unknown_body = await problem(nobodys, 404)
    # Identical but for the id asked for: whether MID's exists does not leak.
    assert _comparable(theirs, body, mine) == _comparable(nobodys, unknown_body, unknown)
    # Nothing of MID's changed, and nothing was written anywhere.
    assert await merchants_rows(pool, MID) == owner_rows
    assert await everything(pool) == before
    assert failures(client) == Counter()

    # The id is real: its owner gets it.
    resp = await client.request(method, template.format(quote(mine, safe="")))
    assert resp.status == owners_status, await resp.text()


async def test_lists_show_only_the_callers_own(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    other: dict[str, str],
) -> None:
    # Interleaved, so ids of the two merchants alternate and paging would mix them if it could.
    mine_dead, theirs_dead, mine_open, theirs_open = [], [], [], []
    for i in range(3):
        mine_dead.append((await dead_delivery(client, pool, f"ORD_D{i}"))[1])
        theirs_dead.append((await dead_delivery(client, pool, f"ORD_D{i}", other))[1])
        mine_open.append(await unresolved_payment(client, pool, f"ORD_U{i}"))
        theirs_open.append(await unresolved_payment(client, pool, f"ORD_U{i}", other))
    await repo.merchants.issue_key(OTHER, "live", settings.api_key_secret)

    async def walk(path: str, item: str, key: str, headers: dict[str, str] | None) -> list[Any]:
        seen: list[Any] = []
        after = 0
        for _ in range(10):
            resp = await client.get(
                path, params={"limit": "1", "after": str(after)}, headers=headers
            )
            assert resp.status == 200, await resp.text()
            page = await resp.json()
            seen += [entry[key] for entry in page[item]]
            if page["next"] is None:
                return seen
            after = page["next"]
        raise AssertionError(f"{path} did not end: {seen}")

    assert await walk(DEAD, "deliveries", "id", None) == mine_dead
    assert await walk(DEAD, "deliveries", "id", other) == theirs_dead
    assert await walk(UNRESOLVED, "payments", "tid", None) == mine_open
    assert await walk(UNRESOLVED, "payments", "tid", other) == theirs_open
    # A full page each, too.
    full = await (await client.get(DEAD, params={"limit": "500"})).json()
    assert [d["id"] for d in full["deliveries"]] == mine_dead

    my_keys = {k["id"] for k in (await (await client.get(KEYS)).json())["keys"]}
    their_keys = {k["id"] for k in (await (await client.get(KEYS, headers=other)).json())["keys"]}
    assert my_keys == set(
        await pool.fetchval(
            "SELECT array_agg(a.id) FROM api_keys a JOIN merchants m ON m.id = a.merchant_id"
            " WHERE m.mid = $1",
            MID,
        )
    )
    # The other merchant's live key is of another mode: its test key does not list it.
    assert len(their_keys) == 1 and not my_keys & their_keys


async def test_echo_mid_of_another_merchant_is_403_and_stores_nothing(
    client: Client, pool: asyncpg.Pool, other: dict[str, str]
) -> None:
    before = await everything(pool)
    for mid in (OTHER, "nobody_at_all", MID.upper()):
        body = {**SEED_REQUEST, "echo": {**SEED_REQUEST["echo"], "mid": mid}}
        refused = await problem(await client.post(PAY, json=body), 403, "echo.mid")
        assert refused["type"] == "/problems/merchant-mismatch"
    # The other merchant cannot pay in MID's name either.
    await problem(await client.post(PAY, json=SEED_REQUEST, headers=other), 403, "echo.mid")
    assert await everything(pool) == before
    # Its own mid, no mid and a null mid are all the key's merchant.
    for order, echo in (("O1", {"mid": MID}), ("O2", {}), ("O3", {"mid": None})):
        resp = await client.post(PAY, json={**SEED_REQUEST, "orderId": order, "echo": echo})
        assert resp.status == 202, await resp.text()
    mids = await pool.fetch("SELECT DISTINCT mid FROM payment_processes")
    assert [r["mid"] for r in mids] == [MID]


# --- live keys and the manual trigger --------------------------------------------------------


async def test_live_key_cannot_settle_by_hand_but_can_resend(
    client: Client, pool: asyncpg.Pool, repo: Repository, settings: Settings
) -> None:
    live = bearer((await repo.merchants.issue_key(MID, "live", settings.api_key_secret)).key)
    tid = await pay(client, "ORD_LIVE", live)
    before = await everything(pool)
    for status in ("SUCCESS", "FAILED"):
        body = await problem(await client.post(TRIGGER.format(tid, status), headers=live), 403)
        assert "sk_test_" in body["detail"]
        # The test key does not even see the live payment.
        await problem(await client.post(TRIGGER.format(tid, status)), 404)
    assert await everything(pool) == before
    assert (
        await pool.fetchval("SELECT status FROM payment_processes WHERE tid = $1", tid) == "PENDING"
    )

    # Settled by the engine (as a worker would), its webhook may be resent with the live key.
    await pool.execute(
        "UPDATE payment_processes SET status = 'SUCCESS', approval_no = 'AP1' WHERE tid = $1", tid
    )
    resp = await client.post(TRIGGER.format(tid, "SUCCESS"), headers=live)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["action"] == "resent"
    deliveries = await pool.fetch("SELECT event_id, event_status FROM webhook_deliveries")
    assert len(deliveries) == 1 and deliveries[0]["event_status"] == "SUCCESS"
    # The other status is still a conflict.
    body = await problem(await client.post(TRIGGER.format(tid, "FAILED"), headers=live), 409)
    assert body["currentStatus"] == "SUCCESS"


# --- the operators' CLI ----------------------------------------------------------------------


async def test_cli_create_prints_json_whose_key_works(
    client: Client, pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
    env |= {"DATABASE_URL": database_url, "ENGINE_API_KEY_SECRET": settings.api_key_secret}
    created = await create_merchant(env, mid="cli_merchant", name="CLI merchant")
    # No webhook secret: none is shared, and this merchant registered no endpoint yet.
    assert set(created) == {"mid", "name", "mode", "apiKey", "prefix"}
    assert KEY_RE.match(created["apiKey"]) and created["apiKey"].startswith("sk_test_")
    assert created["prefix"] == keys.display_prefix(created["apiKey"])

    key = bearer(created["apiKey"])
    body = {**SEED_REQUEST, "echo": {"mid": "cli_merchant"}}
    resp = await client.post(PAY, json=body, headers=key)
    assert resp.status == 202, await resp.text()
    tid = (await resp.json())["transactionId"]
    assert (
        await pool.fetchval("SELECT mid FROM payment_processes WHERE tid = $1", tid)
        == "cli_merchant"
    )
    listed = (await (await client.get(KEYS, headers=key)).json())["keys"]
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    # The new merchant's payment is its own: MID's key does not find it.
    await problem(await client.get(LOOKUP.format(tid)), 404)
    assert failures(client) == Counter()


async def test_cli_issues_a_key_of_the_other_mode(
    client: Client, pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
    env |= {"DATABASE_URL": database_url, "ENGINE_API_KEY_SECRET": settings.api_key_secret}
    created = await create_merchant(env, mid="cli_two_modes", name="Two modes")

    async def cli_key(mid: str, mode: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.commands.merchants",
            "key",
            "--mid",
            mid,
            "--mode",
            mode,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await cli_key("cli_two_modes", "live")
    assert code == 0
    live = json.loads(out)
    assert live["apiKey"].startswith("sk_live_") and live["mode"] == "live"
    # Each key lists its own mode's keys only.
    test_keys = (await (await client.get(KEYS, headers=bearer(created["apiKey"]))).json())["keys"]
    live_keys = (await (await client.get(KEYS, headers=bearer(live["apiKey"]))).json())["keys"]
    assert [k["prefix"] for k in test_keys] == [created["prefix"]]
    assert [k["prefix"] for k in live_keys] == [live["prefix"]]
    # No merchant, no key.
    assert (await cli_key("nobody_here", "live"))[0] != 0


async def test_cli_demo_keeps_a_working_key_and_replaces_a_dead_one(
    client: Client,
    repo: Repository,
    database_url: str,
    settings: Settings,
    api_key: str,
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "SIM_"))}
    env |= {
        "DATABASE_URL": database_url,
        "ENGINE_API_KEY_SECRET": settings.api_key_secret,
        "ENGINE_DATA_DIR": str(tmp_path),
    }
    saved_file = tmp_path / "demo-merchant.json"

    async def works(key: str) -> bool:
        resp = await client.get(KEYS, headers=bearer(key))
        return resp.status == 200

    out, first = await demo(env)
    assert first["mid"] == MID and KEY_RE.match(first["apiKey"]), first
    assert f"API key {first['apiKey']}" in out and "a new key" not in out
    assert await works(first["apiKey"])
    assert saved_file.stat().st_mode & 0o777 == 0o600
    # A working key is shown again, not replaced.
    out, again = await demo(env)
    assert again == first and f"API key {first['apiKey']}" in out

    # The README's reader revoked it: the next `make run` issues and saves a fresh one.
    async def key_id(prefix: str) -> int:
        [found] = [k.id for k in await repo.merchants.api_keys(MID, "test") if k.prefix == prefix]
        return found

    # (MID is the demo merchant, and the client's own key is MID's too: it stays untouched.)
    assert await repo.merchants.revoke_key(MID, "test", await key_id(first["prefix"])) is not None
    out, second = await demo(env)
    assert second["apiKey"] != first["apiKey"] and await works(second["apiKey"])
    assert f"API key {second['apiKey']}" in out and "was revoked" in out, out

    # Rolled with no grace: expired, replaced alike.
    second_id = await key_id(second["prefix"])
    rolled = await repo.merchants.roll_key(MID, "test", second_id, 0, settings.api_key_secret)
    assert rolled is not None
    out, third = await demo(env)
    assert third["apiKey"] not in (first["apiKey"], second["apiKey"])
    assert await works(third["apiKey"]) and "was expired" in out, out

    # A key this database never issued (another database, or another secret), or a file that
    # is not JSON: replaced too.
    saved_file.write_text(json.dumps({**third, "apiKey": keys.new_key("test")}))
    out, fourth = await demo(env)
    assert await works(fourth["apiKey"]) and "was unknown" in out, out
    saved_file.write_text("{not json")
    out, fifth = await demo(env)
    assert await works(fifth["apiKey"]) and "was unknown" in out, out
    # The dead ones stay dead.
    for dead in (first, second):
        assert not await works(dead["apiKey"])
    assert await works(api_key)
