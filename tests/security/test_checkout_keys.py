"""Checkout's keys and scoping: a publishable key opens only its merchant's and mode's
sessions on the browser's routes; a secret key is refused there; hostile input is a problem."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from config.settings import Settings
from engine.store.repository import Repository
from simulator.server import SimulatorHandle
from tests.conftest import MID
from tests.integration.checkout_support import (
    APPROVES,
    ORDER,
    PUBLIC,
    SESSIONS,
    create,
    publishable,
    shopper,
    view,
)

Client = TestClient[Any, Any]


async def _code(resp: Any) -> tuple[int, str | None]:
    assert resp.content_type == "application/problem+json", await resp.text()
    return resp.status, (await resp.json()).get("code")


async def test_key_errors_on_the_browser_routes(
    client: Client, repo: Repository, settings: Settings, api_key: str
) -> None:
    pk = await publishable(repo, settings)
    made = await create(client)
    url, params = PUBLIC.format(made["id"]), {"clientSecret": made["clientSecret"]}

    async def with_key(key: str, where: str = "header") -> tuple[int, str | None]:
        if where == "header":
            resp = await client.get(url, params=params, headers={"Authorization": f"Bearer {key}"})
        else:  # EventSource and images send it as a query parameter
            resp = await client.get(
                url, params=params | {"key": key}, headers={"Authorization": ""}
            )
        return await _code(resp) if resp.status >= 400 else (resp.status, None)

    assert await with_key(pk) == (200, None)
    assert await with_key(pk, "query") == (200, None)
    assert await with_key(api_key) == (403, "secret_key_in_browser")
    assert await with_key(api_key, "query") == (403, "secret_key_in_browser")
    assert await with_key("pk_test_" + "x" * 43) == (401, "authentication_error")
    assert await with_key("pk_test_short") == (401, "authentication_error")
    live = await publishable(repo, settings, mode="live")
    assert await with_key(live) == (401, "authentication_error")  # the other mode's key
    keys = await (await client.get("/api/keys")).json()
    pk_id = next(k["id"] for k in keys["keys"] if k["kind"] == "publishable")
    assert (await client.delete(f"/api/keys/{pk_id}")).status == 200
    assert await with_key(pk) == (401, "authentication_error")  # revoked


async def test_publishable_key_cannot_use_the_merchant_api(
    client: Client, repo: Repository, settings: Settings
) -> None:
    pk = await publishable(repo, settings)
    for method, path in (
        ("POST", SESSIONS),
        ("GET", "/api/payments/unresolved"),
        ("GET", "/api/keys"),
    ):
        resp = await client.request(
            method, path, json=ORDER, headers={"Authorization": f"Bearer {pk}"}
        )
        assert await _code(resp) == (403, "publishable_key_not_allowed"), path


async def test_publishable_keys_are_issued_rolled_and_listed(client: Client) -> None:
    issued = await client.post("/api/keys", json={"kind": "publishable"})
    assert issued.status == 201
    body = await issued.json()
    assert body["kind"] == "publishable" and body["key"].startswith("pk_test_")
    rolled = await client.post(f"/api/keys/{body['id']}/roll", json={})
    assert rolled.status == 201
    assert (await rolled.json())["new"]["key"].startswith("pk_test_")


async def test_other_merchants_session_and_wrong_secret_are_not_found(
    client: Client, repo: Repository, settings: Settings
) -> None:
    made = await create(client)
    await repo.merchants.create_merchant("other_mid", "Other")
    other_pk = await publishable(repo, settings, "other_mid")
    status, body = await view(client, other_pk, made)
    assert (status, body["code"]) == (404, "not_found")
    pk = await publishable(repo, settings)
    status, body = await view(client, pk, made | {"clientSecret": made["clientSecret"] + "x"})
    assert (status, body["code"]) == (404, "not_found")
    other_sk = (await repo.merchants.issue_key("other_mid", "test", settings.api_key_secret)).key
    resp = await client.get(
        f"{SESSIONS}/{made['id']}", headers={"Authorization": f"Bearer {other_sk}"}
    )
    assert await _code(resp) == (404, "not_found")
    live_sk = (await repo.merchants.issue_key(MID, "live", settings.api_key_secret)).key
    resp = await client.get(
        f"{SESSIONS}/{made['id']}", headers={"Authorization": f"Bearer {live_sk}"}
    )
    assert await _code(resp) == (404, "not_found")  # the other mode's
    for bad in ("cs_nope", "x" * 300, "cs_" + "A" * 22, "%00"):
        resp = await client.get(f"{SESSIONS}/{bad}")
        assert resp.status == 404, bad


async def test_hostile_session_requests(client: Client) -> None:
    cases: list[tuple[Any, int, str]] = [
        (ORDER | {"amount": 10**30}, 422, "amount"),
        (ORDER | {"amount": "100"}, 422, "amount"),
        (ORDER | {"amount": 0}, 422, "amount"),
        (ORDER | {"currency": "XYZ"}, 422, "currency"),
        (ORDER | {"orderId": "a\nb"}, 422, "orderId"),
        (ORDER | {"expiresInSeconds": 5}, 422, "expiresInSeconds"),
        (ORDER | {"successUrl": "javascript:alert(1)"}, 422, "successUrl"),
        (ORDER | {"extra": 1}, 422, "extra"),
        ([ORDER], 422, "body"),
    ]
    for body, status, field in cases:
        resp = await client.post(SESSIONS, json=body)
        assert resp.status == status, (body, await resp.text())
        assert (await resp.json())["field"] == field
    bad = await client.post(
        SESSIONS, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status == 400 and bad.content_type == "application/problem+json"
    huge = await client.post(
        SESSIONS,
        data=b'{"a":"' + b"x" * 200_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status == 413
    key = await client.post(SESSIONS, json=ORDER, headers={"Idempotency-Key": "a b"})
    assert key.status == 422 and (await key.json())["field"] == "Idempotency-Key"


async def test_app_posts_need_csrf_and_a_sign_in(
    client: Client, repo: Repository, sim: SimulatorHandle
) -> None:
    made = await create(client)
    jane = await shopper(repo, sim)
    no_csrf = jane.headers() | {"X-CSRF-Token": "wrong"}
    resp = await client.post(f"/app/pay/{made['id']}/confirm", headers=no_csrf)
    assert await _code(resp) == (403, "csrf")
    resp = await client.post(
        f"/app/pay/{made['id']}/cancel", headers={"Accept": "application/json"}
    )
    assert await _code(resp) == (401, "signed_out")
    bad_login = await client.post(
        "/app/login",
        data={"email": jane.email, "password": "wrong", "csrf": "c"},
        headers={"Cookie": "hamster_app_login=c"},
    )
    assert bad_login.status == 401
    no_login_csrf = await client.post(
        "/app/login",
        data={"email": jane.email, "password": "correct horse battery", "csrf": "x"},
        headers={"Cookie": "hamster_app_login=c"},
    )
    assert no_login_csrf.status == 403
    good = await client.post(
        "/app/login",
        data={
            "email": jane.email,
            "password": "correct horse battery",
            "csrf": "c",
            "next": "//evil",
        },
        headers={"Cookie": "hamster_app_login=c"},
        allow_redirects=False,
    )
    assert good.status == 303 and good.headers["Location"] == "/app/"
    assert "hamster_app=" in good.headers["Set-Cookie"]


async def test_no_card_number_in_the_database_or_the_logs(
    client: Client, repo: Repository, sim: SimulatorHandle, pool: asyncpg.Pool
) -> None:
    with capture_logs() as logs:
        jane = await shopper(repo, sim, number=APPROVES)
        made = await create(client)
        await client.post(f"/app/pay/{made['id']}/confirm", headers=jane.headers())
    assert APPROVES not in repr(logs)
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    for t in tables:
        rows = await pool.fetch(f'SELECT t::text AS line FROM "{t["table_name"]}" t')
        assert not any(APPROVES in r["line"] for r in rows), t["table_name"]
    card = await pool.fetchrow("SELECT token, brand, last4 FROM customer_cards")
    assert card["last4"] == "4242" and card["brand"] == "visa"


async def test_cors_on_the_browser_routes(
    client: Client, repo: Repository, settings: Settings
) -> None:
    made = await create(client)
    url = PUBLIC.format(made["id"])
    pre = await client.options(
        url,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "GET",
            "Authorization": "",
        },
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Last-Event-ID" in pre.headers["Access-Control-Allow-Headers"]
    refused = await client.get(url, headers={"Origin": "https://shop.example", "Authorization": ""})
    assert refused.status == 401  # errors carry CORS too, so the SDK can read them
    assert refused.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    pk = await publishable(repo, settings)
    for kind, magic in (("svg", b"<svg"), ("png", b"\x89PNG")):
        qr = await client.get(
            f"{url}/qr.{kind}",
            params={"key": pk, "clientSecret": made["clientSecret"]},
            headers={"Authorization": ""},
        )
        assert qr.status == 200 and (await qr.read()).lstrip().startswith(magic), kind
