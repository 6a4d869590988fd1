"""The intake over HTTP against a real database: acks, problems, idempotency, trigger, dead letters.

After every 4xx the database is checked to have changed nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from api.app import create_app
from config.settings import Settings
from engine.store.repository import Repository
from engine.webhooks import signing
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.waiting import wait_until

PAY = "/api/payment"
LOOKUP = "/api/payment/transaction/{}"
TRIGGER = "/api/payment/webhook/trigger/{}"
DEAD = "/api/webhooks/dead"
REDELIVER = "/api/webhooks/{}/redeliver"
HOOK_PATH = "/api/webhook/pg/DUMMY"
PROBLEM = "application/problem+json"
TID_RE = re.compile(r"^DUMMY_\d{8}_\d{8}$")
# Nothing listens on the discard port: every delivery there fails at once.
CLOSED_HOOK = "http://127.0.0.1:9/hook"
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.02

Client = TestClient[Any, Any]
SEED_ECHO: dict[str, Any] = json.loads(json.dumps(SEED_REQUEST["echo"]))


# --- helpers -------------------------------------------------------------------------------


def seed(**changes: Any) -> dict[str, Any]:
    """The seed's request with top-level fields replaced (a value of ... drops the field)."""
    body: dict[str, Any] = json.loads(json.dumps(SEED_REQUEST))
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of an API key."""
    return {"Authorization": f"Bearer {key}"}


async def other_merchant(repo: Repository, settings: Settings, mid: str = "other") -> str:
    """Create merchant `mid` with a test key; returns the key."""
    await repo.merchants.create_merchant(mid, mid.title())
    return (await repo.merchants.issue_key(mid, "test", settings.api_key_secret)).key


def pairs(text: str | bytes) -> Any:
    """JSON with every object as its list of (key, value) pairs: key order becomes comparable."""
    return json.loads(text, object_pairs_hook=list)


async def payment_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM payment_processes"))


async def delivery_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM webhook_deliveries"))


async def snapshot(pool: asyncpg.Pool) -> tuple[str | None, str | None]:
    """Every payment and delivery row as text: equal snapshots mean nothing changed."""
    payments = await pool.fetchval(
        "SELECT string_agg(t::text, E'\\n' ORDER BY id) FROM payment_processes t"
    )
    deliveries = await pool.fetchval(
        "SELECT string_agg(t::text, E'\\n' ORDER BY id) FROM webhook_deliveries t"
    )
    return payments, deliveries


async def problem(resp: aiohttp.ClientResponse, status: int, field: str | None = None) -> Any:
    """Assert an RFC 9457 problem with this status (and field); return its body."""
    text = await resp.text()
    assert resp.status == status, text[:500]
    assert resp.content_type == PROBLEM, (resp.content_type, text)
    body = json.loads(text)
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


async def post(client: Client, body: Any) -> aiohttp.ClientResponse:
    return await client.post(PAY, json=body)


async def post_raw(client: Client, raw: bytes | str) -> aiohttp.ClientResponse:
    data = raw.encode() if isinstance(raw, str) else raw
    return await client.post(PAY, data=data, headers={"Content-Type": "application/json"})


async def rejected(
    pool: asyncpg.Pool,
    resp: aiohttp.ClientResponse,
    status: int,
    field: str | None = None,
    *,
    before: tuple[str | None, str | None] | None = None,
) -> Any:
    """A problem with `status`, after which the database holds exactly what it held before."""
    body = await problem(resp, status, field)
    if before is None:
        assert await payment_rows(pool) == 0
        assert await delivery_rows(pool) == 0
    else:
        assert await snapshot(pool) == before
    return body


async def accepted(client: Client, body: Any) -> dict[str, Any]:
    resp = await post(client, body)
    text = await resp.text()
    assert resp.status == 202, text
    result: dict[str, Any] = json.loads(text)
    return result


async def trigger(client: Client, tid: str, status: str | None) -> aiohttp.ClientResponse:
    query = f"?status={quote(status)}" if status is not None else ""
    return await client.post(TRIGGER.format(quote(tid, safe="")) + query)


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` objects deep (itself included), ending in an empty object."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# --- the seed's request ---------------------------------------------------------------------


async def test_seed_request_acked_stored_and_looked_up(client: Client, pool: asyncpg.Pool) -> None:
    # Echo with extra keys, nested values and a key order that is not sorted.
    raw = (
        '{"userPublicId":"USR_123","orderId":"ORD_456","amount":10000,'
        '"echo":{"mid":"hamster_dummy_mid_001","orderNumber":"TEST_ORDER",'
        '"gatewayReferenceId":"CGW_REF_123","zExtra":{"y":2,"b":[1,"둘",null]},'
        '"aExtra":true,"big":123456789012345678901234567890}}'
    )
    resp = await post_raw(client, raw)
    text = await resp.text()
    assert resp.status == 202, text
    assert resp.content_type == "application/json"
    ack = json.loads(text)
    sent = json.loads(raw)
    assert ack["status"] == "PENDING"
    assert ack["code"] == "ACK_OK"
    assert TID_RE.match(ack["transactionId"]), ack["transactionId"]
    assert ack["amount"] == 10000 and isinstance(ack["amount"], int)
    assert ack["echo"] == sent["echo"]
    assert ack["message"] == "Payment request received and processing"
    # Key order of echo, at every level, exactly as sent.
    echo_pairs = dict(pairs(text))["echo"]
    assert echo_pairs == dict(pairs(raw))["echo"]

    tid = ack["transactionId"]
    row = await pool.fetchrow("SELECT * FROM payment_processes")
    assert await payment_rows(pool) == 1
    assert row["tid"] == tid
    assert row["status"] == "PENDING"
    assert row["amount"] == 10000 and isinstance(row["amount"], int)
    assert row["currency"] == "KRW"
    assert row["order_id"] == "ORD_456"
    assert row["user_public_id"] == "USR_123"
    assert row["mid"] == "hamster_dummy_mid_001"
    assert row["echo"] == sent["echo"]
    assert row["approval_no"] is None and row["fail_reason"] is None
    assert await delivery_rows(pool) == 0

    resp = await client.get(LOOKUP.format(tid))
    assert resp.status == 200, await resp.text()
    looked = await resp.json()
    expected_keys = {
        "tid",
        "orderId",
        "amount",
        "status",
        "approvalNo",
        "failReason",
        "requestedAt",
        "processedAt",
        "webhookSentAt",
    }
    assert expected_keys <= looked.keys()
    assert looked["tid"] == tid
    assert looked["orderId"] == "ORD_456"
    assert looked["amount"] == 10000
    assert looked["status"] == "PENDING"
    assert looked["approvalNo"] is None
    assert looked["failReason"] is None
    assert looked["processedAt"] is None
    assert looked["webhookSentAt"] is None
    requested = datetime.fromisoformat(looked["requestedAt"])
    assert requested.utcoffset() is not None
    assert requested == row["requested_at"]


async def test_seed_request_as_given_in_conftest(client: Client, pool: asyncpg.Pool) -> None:
    ack = await accepted(client, SEED_REQUEST)
    assert ack["echo"] == SEED_REQUEST["echo"]
    assert ack["currency"] == "KRW"
    assert list(ack["echo"]) == list(SEED_ECHO)
    assert await pool.fetchval("SELECT tid FROM payment_processes") == ack["transactionId"]


# --- malformed JSON: 400 ----------------------------------------------------------------------

MALFORMED: dict[str, bytes] = {
    "truncated": b'{"userPublicId":"USR_123","orderId":"ORD_456","amount":100',
    "empty": b"",
    "not-utf8": b'{"userPublicId":"\xff\xfe\xfa","orderId":"ORD_456","amount":10000}',
    "latin1": '{"userPublicId":"Jos\u00e9","orderId":"O","amount":1}'.encode("latin-1"),
    "nan": b'{"userPublicId":"USR_123","orderId":"ORD_456","amount":NaN}',
    "infinity": b'{"userPublicId":"USR_123","orderId":"ORD_456","amount":Infinity}',
    "neg-infinity": b'{"userPublicId":"U","orderId":"O","amount":1,"echo":{"x":-Infinity}}',
    "duplicate-keys": b'{"amount":1,"amount":2,"userPublicId":"USR_123","orderId":"ORD_456"}',
    "nested-duplicate": (
        b'{"userPublicId":"U","orderId":"O","amount":1,"echo":{"mid":"a","mid":"b"}}'
    ),
    "trailing-garbage": b'{"userPublicId":"U","orderId":"O","amount":1} x',
    "single-quotes": b"{'userPublicId':'U','orderId':'O','amount':1}",
    "deep-small": b"[" * 20_000,
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_json_is_400(client: Client, pool: asyncpg.Pool, raw: bytes) -> None:
    body = await rejected(pool, await post_raw(client, raw), 400, "body")
    assert body["type"] != "about:blank"


async def test_100000_deep_nesting_is_400(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, api_key: str
) -> None:
    # The default body limit is below 100000 bytes; raise it so the parser sees the whole body.
    big = settings.model_copy(update={"max_body_bytes": 1024 * 1024})
    client = await aiohttp_client(create_app(big), headers=bearer(api_key))
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000):
        await rejected(pool, await post_raw(client, raw), 400, "body")
    echo = b'{"userPublicId":"U","orderId":"O","amount":1,"echo":' + b'{"a":' * 100_000
    await rejected(pool, await post_raw(client, echo), 400, "body")


# --- validation: 422 ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["userPublicId", "orderId", "amount"])
async def test_missing_required_field_is_422(
    client: Client, pool: asyncpg.Pool, field: str
) -> None:
    await rejected(pool, await post(client, seed(**{field: ...})), 422, field)


INVALID: list[tuple[str, str, Any]] = [
    ("amount-string", "amount", "10000"),
    ("amount-float", "amount", 10000.0),
    ("amount-true", "amount", True),
    ("amount-null", "amount", None),
    ("amount-zero", "amount", 0),
    ("amount-negative", "amount", -1),
    ("amount-2**70", "amount", 2**70),
    ("amount-2**63", "amount", 2**63),
    ("amount-list", "amount", [10000]),
    ("orderId-number", "orderId", 456),
    ("orderId-null", "orderId", None),
    ("orderId-empty", "orderId", ""),
    ("orderId-too-long", "orderId", "O" * 65),
    ("orderId-nul", "orderId", "ORD\x00456"),
    ("userPublicId-number", "userPublicId", 123),
    ("userPublicId-nul", "userPublicId", "\x00"),
    ("echo-list", "echo", [{"mid": "m"}]),
    ("echo-string", "echo", "mid"),
    ("echo-null", "echo", None),
    ("echo-mid-number", "echo", {"mid": 1}),
    ("echo-mid-object", "echo", {"mid": {"id": "m"}}),
    ("echo-mid-empty", "echo", {"mid": ""}),
    ("echo-mid-too-long", "echo", {"mid": "m" * 65}),
    ("echo-nul-value", "echo", {"mid": "m", "note": "a\x00b"}),
    ("echo-nul-key", "echo", {"mid": "m", "k\x00": 1}),
    ("echo-too-deep", "echo", nested(40)),
    ("echo-too-deep-list", "echo", {"a": json.loads("[" * 40 + "]" * 40)}),
    ("currency-lower", "currency", "krw"),
    ("currency-long", "currency", "KRWX"),
    ("currency-number", "currency", 410),
    ("webhookUrl-ftp", "webhookUrl", "ftp://x"),
    ("webhookUrl-not-url", "webhookUrl", "not a url"),
    ("webhookUrl-relative", "webhookUrl", "/api/webhook"),
    ("webhookUrl-number", "webhookUrl", 8080),
]


@pytest.mark.parametrize(
    ("field", "value"), [(f, v) for _, f, v in INVALID], ids=[i for i, _, _ in INVALID]
)
async def test_invalid_field_is_422(
    client: Client, pool: asyncpg.Pool, field: str, value: Any
) -> None:
    body = await rejected(pool, await post(client, seed(**{field: value})), 422, field)
    assert body["type"] != "about:blank"
    assert body["errors"] and body["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"curency": "USD"}, "curency"),
        ({"idempotencyKey": "k"}, "idempotencyKey"),
        ({"Amount": 5}, "Amount"),
        ({"currency": "USD", "order_id": "O"}, "order_id"),
    ],
    ids=["misspelt-currency", "unknown", "wrong-case", "snake-case"],
)
async def test_unknown_top_level_field_is_422_naming_it(
    client: Client, pool: asyncpg.Pool, changes: dict[str, Any], field: str
) -> None:
    # Stripe's rule: an unknown member is an error, never ignored. "curency" was charged as
    # KRW while it was ignored.
    body = await rejected(pool, await post(client, seed(**changes)), 422, field)
    assert body["type"] == "/problems/validation-error"
    assert [e["field"] for e in body["errors"]] == [field]


async def test_inside_echo_any_member_goes(client: Client, pool: asyncpg.Pool) -> None:
    echo = {**SEED_ECHO, "curency": "USD", "anything": {"nested": [1, "two", None]}}
    ack = await accepted(client, seed(echo=echo))
    assert ack["echo"] == echo
    assert await pool.fetchval("SELECT currency FROM payment_processes") == "KRW"


async def test_amount_limit_comes_from_settings(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    over = seed(amount=settings.max_amount + 1)
    await rejected(pool, await post(client, over), 422, "amount")
    ack = await accepted(client, seed(amount=settings.max_amount))
    assert ack["amount"] == settings.max_amount
    assert await pool.fetchval("SELECT amount FROM payment_processes") == settings.max_amount


LONE_SURROGATES: dict[str, tuple[str, str]] = {
    "echo-value": ('{"userPublicId":"U","orderId":"O","amount":1,"echo":{"x":"\\ud800"}}', "echo"),
    "echo-key": ('{"userPublicId":"U","orderId":"O","amount":1,"echo":{"\\udfff":1}}', "echo"),
    "echo-deep": (
        '{"userPublicId":"U","orderId":"O","amount":1,"echo":{"a":[{"b":"x\\ud83d"}]}}',
        "echo",
    ),
    "echo-mid": ('{"userPublicId":"U","orderId":"O","amount":1,"echo":{"mid":"\\ud800"}}', "echo"),
    "orderId": ('{"userPublicId":"U","orderId":"O\\ud800","amount":1}', "orderId"),
    "userPublicId": ('{"userPublicId":"\\udc00","orderId":"O","amount":1}', "userPublicId"),
    "webhookUrl": (
        '{"userPublicId":"U","orderId":"O","amount":1,"webhookUrl":"http://h/\\ud800"}',
        "webhookUrl",
    ),
}


@pytest.mark.parametrize(("raw", "field"), LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
async def test_lone_surrogate_is_422(
    client: Client, pool: asyncpg.Pool, raw: str, field: str
) -> None:
    await rejected(pool, await post_raw(client, raw), 422, field)


async def test_echo_depth_limit(client: Client, pool: asyncpg.Pool) -> None:
    # echo itself is level 1; 32 levels are fine, 33 are not.
    await rejected(pool, await post(client, seed(echo=nested(33))), 422, "echo")
    ack = await accepted(client, seed(echo=nested(32)))
    assert ack["echo"] == nested(32)
    assert await pool.fetchval("SELECT echo FROM payment_processes") == nested(32)


@pytest.mark.parametrize(
    "raw",
    ["[]", "[1,2]", "10000", '"text"', "null", "true"],
    ids=["empty-array", "array", "number", "string", "null", "bool"],
)
async def test_body_not_an_object_is_422(client: Client, pool: asyncpg.Pool, raw: str) -> None:
    await rejected(pool, await post_raw(client, raw), 422, "body")


async def test_huge_float_in_echo_is_not_a_server_error(client: Client, pool: asyncpg.Pool) -> None:
    # 1e400 parses to float('inf'), which jsonb cannot hold: it must be refused, not a 500.
    raw = '{"userPublicId":"U","orderId":"O","amount":1,"echo":{"mid":"m","x":1e400}}'
    resp = await post_raw(client, raw)
    assert resp.status in (400, 422), await resp.text()
    await rejected(pool, resp, resp.status)


# --- 404, 405, 413 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tid",
    [
        "DUMMY_20260101_00000000",
        "x'; DROP TABLE payment_processes--",
        "x'; DROP TABLE--",
        "DUMMY_20260101_0000000a",
        "%00",
        "\u00e9\u00e9",
        "a" * 300,
    ],
    ids=["well-formed", "sql", "sql-short", "bad-digit", "percent", "unicode", "long"],
)
async def test_unknown_tid_is_404(client: Client, pool: asyncpg.Pool, tid: str) -> None:
    await accepted(client, SEED_REQUEST)
    before = await snapshot(pool)
    resp = await client.get(LOOKUP.format(quote(tid, safe="")))
    await rejected(pool, resp, 404, before=before)
    resp = await client.get(LOOKUP.format(quote(tid, safe="")) + "/webhooks")
    await rejected(pool, resp, 404, before=before)
    # The table is still there and still answers.
    assert await payment_rows(pool) == 1


async def test_unknown_route_is_404_problem(client: Client, pool: asyncpg.Pool) -> None:
    await rejected(pool, await client.get("/api/nothing-here"), 404)
    await rejected(pool, await client.post("/api/payment/"), 404)


async def test_wrong_method_is_405_problem(client: Client, pool: asyncpg.Pool) -> None:
    resp = await client.get(PAY)
    await rejected(pool, resp, 405)
    assert "POST" in resp.headers.get("Allow", "")
    resp = await client.put(PAY, json=SEED_REQUEST)
    await rejected(pool, resp, 405)

    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    before = await snapshot(pool)
    resp = await client.delete(LOOKUP.format(tid))
    await rejected(pool, resp, 405, before=before)
    assert "GET" in resp.headers.get("Allow", "")
    resp = await client.get(TRIGGER.format(tid) + "?status=SUCCESS")
    await rejected(pool, resp, 405, before=before)
    assert (await pool.fetchval("SELECT status FROM payment_processes")) == "PENDING"


async def test_every_405_names_the_allowed_methods(client: Client, pool: asyncpg.Pool) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    before = await snapshot(pool)
    for method, path, allowed in [
        ("POST", f"/api/payments/{tid}", {"GET", "HEAD"}),
        ("DELETE", "/api/payments", {"GET", "HEAD", "POST"}),
        ("PUT", PAY, {"POST"}),
        ("GET", f"/api/payments/{tid}/webhook-trigger", {"POST"}),
        ("PATCH", f"/api/payments/{tid}/refunds", {"GET", "HEAD", "POST"}),
    ]:
        resp = await client.request(method, path)
        body = await rejected(pool, resp, 405, before=before)
        assert set(resp.headers["Allow"].split(",")) == allowed, (path, resp.headers["Allow"])
        named = set(body["detail"].split("allowed: ")[1].split(", "))
        assert named == allowed, body
        assert body["detail"].startswith(f"{method} is not allowed on {path}"), body


async def test_resource_paths_and_the_seeds_aliases_answer_alike(
    client: Client, pool: asyncpg.Pool
) -> None:
    # POST /api/payments pays (the seed's POST /api/payment is its alias), and each payment
    # resource lives under /api/payments/{tid}.
    resp = await client.post("/api/payments", json=SEED_REQUEST)
    assert resp.status == 202, await resp.text()
    tid = (await resp.json())["transactionId"]
    replay = await client.post(PAY, json=SEED_REQUEST)
    assert replay.status == 200 and (await replay.json())["transactionId"] == tid
    assert await payment_rows(pool) == 1
    for path, seed_path in [
        (f"/api/payments/{tid}", LOOKUP.format(tid)),
        (f"/api/payments/{tid}/webhooks", LOOKUP.format(tid) + "/webhooks"),
        ("/api/payments/unresolved", "/api/payment/unresolved"),
    ]:
        new, old = await client.get(path), await client.get(seed_path)
        assert (new.status, old.status) == (200, 200), (path, await new.text())
        assert await new.json() == await old.json(), path
    assert (await (await client.get(f"/api/payments/{tid}")).json())["status"] == "PENDING"
    # The trigger under its resource path settles, and its seed path then resends.
    resp = await client.post(f"/api/payments/{tid}/webhook-trigger?status=SUCCESS")
    assert resp.status == 202 and (await resp.json())["action"] == "settled", await resp.text()
    resp = await trigger(client, tid, "SUCCESS")
    assert resp.status == 202 and (await resp.json())["action"] == "resent", await resp.text()
    assert (await (await client.get(f"/api/payments/{tid}")).json())["status"] == "SUCCESS"
    # Unknown ones are alike too.
    for path in ("/api/payments/DUMMY_20260101_99999999", "/api/payments/nothing"):
        await problem(await client.get(path), 404)
    resp = await client.post(f"/api/payments/{tid}/webhook-trigger?status=MAYBE")
    await problem(resp, 422, "status")


def body_of_size(size: int) -> bytes:
    """A valid request of exactly `size` bytes (padding in echo)."""
    head = b'{"userPublicId":"U","orderId":"O","amount":1,"echo":{"pad":"'
    tail = b'"}}'
    raw = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(raw) == size
    return raw


async def test_body_over_limit_is_413(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    await rejected(pool, await post_raw(client, body_of_size(settings.max_body_bytes + 1)), 413)
    await rejected(pool, await post_raw(client, body_of_size(settings.max_body_bytes * 4)), 413)
    resp = await post_raw(client, body_of_size(settings.max_body_bytes))
    assert resp.status == 202, await resp.text()
    assert await payment_rows(pool) == 1


# --- verbatim storage ----------------------------------------------------------------------

VERBATIM = [
    "주문-0001",
    "🐹💳🧾",
    "x'; DROP TABLE payment_processes;--",
    'Robert"); DELETE FROM webhook_deliveries; --',
    "1 OR 1=1",
    "$1 $$ \\ \\\\ %s %%",
    "e\u0301 vs \u00e9",  # not normalised
    "\u202eRTL\u202c bidi controls are not C0/C1 controls",
    "<script>alert(1)</script>",
]
# Control characters are refused in ids and names (tests/security/test_edges.py) but kept
# verbatim in echo, which is the merchant's own JSON.
ECHO_ONLY = "tab\t newline\n ESC\x1b[31m"


@pytest.mark.parametrize("text", VERBATIM)
async def test_strings_are_stored_and_returned_verbatim(
    client: Client, pool: asyncpg.Pool, text: str
) -> None:
    # The merchant comes from the API key: such a text as echo.mid names another merchant.
    await rejected(pool, await post(client, seed(echo={"mid": text})), 403, "echo.mid")
    echo = {"mid": MID, "note": text, text: text, "list": [text, {"k": text}]}
    ack = await accepted(client, seed(orderId=text, userPublicId=text, orderName=text, echo=echo))
    assert ack["echo"] == echo
    tid = ack["transactionId"]
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["order_id"] == text
    assert row["user_public_id"] == text
    assert row["order_name"] == text
    assert row["mid"] == MID
    assert row["echo"] == echo
    looked = await (await client.get(LOOKUP.format(tid))).json()
    assert looked["orderId"] == text
    # Replaying it finds the same payment: the strings round-trip through the database exactly.
    resp = await post(client, seed(orderId=text, userPublicId=text, orderName=text, echo=echo))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["transactionId"] == tid
    assert await payment_rows(pool) == 1
    assert await pool.fetchval("SELECT to_regclass('webhook_deliveries') IS NOT NULL")


async def test_control_characters_are_kept_verbatim_in_echo(
    client: Client, pool: asyncpg.Pool
) -> None:
    echo = {"mid": MID, "note": ECHO_ONLY, ECHO_ONLY: [ECHO_ONLY]}
    ack = await accepted(client, seed(orderId="ORD_ECHO_CTL", echo=echo))
    assert ack["echo"] == echo
    row = await pool.fetchrow(
        "SELECT echo FROM payment_processes WHERE tid = $1", ack["transactionId"]
    )
    assert row["echo"] == echo


# --- idempotency ----------------------------------------------------------------------------


async def test_replay_returns_same_payment(client: Client, pool: asyncpg.Pool) -> None:
    first = await accepted(client, SEED_REQUEST)
    resp = await post(client, SEED_REQUEST)
    assert resp.status == 200, await resp.text()
    again = await resp.json()
    assert again["transactionId"] == first["transactionId"]
    assert again["status"] == "PENDING" and again["code"] == "ACK_OK"
    assert again["amount"] == 10000 and again["echo"] == SEED_REQUEST["echo"]
    assert again["message"] == "Payment request already received"
    assert await payment_rows(pool) == 1


async def test_replay_with_default_currency_spelled_out(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    first = await accepted(client, SEED_REQUEST)
    resp = await post(client, seed(currency="KRW"))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["transactionId"] == first["transactionId"]
    resp = await post(client, seed(webhookUrl=str(settings.default_webhook_url)))
    assert resp.status == 200, await resp.text()
    assert await payment_rows(pool) == 1


async def test_replay_ignores_echo_key_order(client: Client, pool: asyncpg.Pool) -> None:
    raw1 = (
        '{"userPublicId":"U","orderId":"O-1","amount":5,'
        '"echo":{"mid":"' + MID + '","a":1,"b":{"x":1,"y":[1,{"p":1,"q":2}]}}}'
    )
    raw2 = (
        '{"amount":5,"echo":{"b":{"y":[1,{"q":2,"p":1}],"x":1},"a":1,"mid":"' + MID + '"},'
        '"orderId":"O-1","userPublicId":"U"}'
    )
    resp1 = await post_raw(client, raw1)
    assert resp1.status == 202, await resp1.text()
    resp2 = await post_raw(client, raw2)
    assert resp2.status == 200, await resp2.text()
    tid1 = (await resp1.json())["transactionId"]
    assert (await resp2.json())["transactionId"] == tid1
    assert await payment_rows(pool) == 1
    # Order inside a list is content, though: that is another request.
    raw3 = raw1.replace('[1,{"p":1,"q":2}]', '[{"p":1,"q":2},1]')
    body = await rejected(
        pool, await post_raw(client, raw3), 409, "orderId", before=await snapshot(pool)
    )
    assert body["transactionId"] == tid1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 10001},
        {"userPublicId": "USR_999"},
        {"currency": "USD"},
        {"webhookUrl": "http://127.0.0.1:1/other"},
        {"echo": {**SEED_ECHO, "orderNumber": "OTHER"}},
        {"echo": {**SEED_ECHO, "extra": 1}},
    ],
    ids=["amount", "user", "currency", "webhookUrl", "echo-value", "echo-extra-key"],
)
async def test_same_order_different_request_is_409(
    client: Client, pool: asyncpg.Pool, repo: Repository, change: dict[str, Any]
) -> None:
    if "webhookUrl" in change:  # one of the merchant's endpoints, so only the order conflicts
        await repo.endpoints.add_endpoint(MID, "test", change["webhookUrl"], signing.new_secret())
    first = await accepted(client, SEED_REQUEST)
    before = await snapshot(pool)
    body = await rejected(pool, await post(client, seed(**change)), 409, "orderId", before=before)
    assert body["transactionId"] == first["transactionId"]
    assert body["type"] != "about:blank"
    assert await pool.fetchval("SELECT amount FROM payment_processes") == 10000


async def test_same_order_other_merchant_is_a_new_payment(
    client: Client, pool: asyncpg.Pool, repo: Repository, settings: Settings
) -> None:
    # Idempotency is per merchant, and the merchant is the API key's, not echo.mid.
    other = bearer(await other_merchant(repo, settings, "other"))
    third = bearer(await other_merchant(repo, settings, "third"))
    first = await accepted(client, SEED_REQUEST)
    resp = await client.post(PAY, json=seed(echo={**SEED_ECHO, "mid": "other"}), headers=other)
    assert resp.status == 202, await resp.text()
    second = await resp.json()
    no_mid = seed(echo={"orderNumber": "TEST_ORDER"})
    resp = await client.post(PAY, json=no_mid, headers=third)
    assert resp.status == 202, await resp.text()
    third_ack = await resp.json()
    tids = {first["transactionId"], second["transactionId"], third_ack["transactionId"]}
    assert len(tids) == 3
    mids = await pool.fetch("SELECT mid, order_id FROM payment_processes ORDER BY id")
    assert [(r["mid"], r["order_id"]) for r in mids] == [
        (MID, "ORD_456"),
        ("other", "ORD_456"),
        ("third", "ORD_456"),
    ]
    # Each merchant's replay finds its own payment.
    resp = await client.post(PAY, json=seed(echo={**SEED_ECHO, "mid": "other"}), headers=other)
    assert resp.status == 200 and (await resp.json())["transactionId"] == second["transactionId"]
    resp = await client.post(PAY, json=no_mid, headers=third)
    assert resp.status == 200 and (await resp.json())["transactionId"] == third_ack["transactionId"]
    again = await post(client, SEED_REQUEST)
    assert again.status == 200 and (await again.json())["transactionId"] == first["transactionId"]
    # Naming another merchant in echo.mid is refused, whoever it is, and stores nothing.
    before = await snapshot(pool)
    for mid in ("other", "nobody", "third"):
        changed = seed(orderId="ORD_NEW", echo={**SEED_ECHO, "mid": mid})
        await rejected(pool, await post(client, changed), 403, "echo.mid", before=before)
    # A null echo.mid is no mid: the key's merchant.
    ack = await accepted(client, seed(orderId="ORD_NULL_MID", echo={"mid": None}))
    assert (
        await pool.fetchval(
            "SELECT mid FROM payment_processes WHERE tid = $1", ack["transactionId"]
        )
        == MID
    )


async def test_replay_after_settlement_reports_current_status(
    client: Client, pool: asyncpg.Pool
) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    resp = await trigger(client, tid, "SUCCESS")
    assert resp.status == 202, await resp.text()
    resp = await post(client, SEED_REQUEST)
    assert resp.status == 200, await resp.text()
    again = await resp.json()
    assert again["transactionId"] == tid and again["status"] == "SUCCESS"
    assert await payment_rows(pool) == 1


async def test_concurrent_identical_requests_make_one_payment(
    client: Client, pool: asyncpg.Pool
) -> None:
    responses = await asyncio.gather(*(post(client, SEED_REQUEST) for _ in range(50)))
    statuses = [r.status for r in responses]
    bodies = [await r.json() for r in responses]
    assert statuses.count(202) == 1, statuses
    assert statuses.count(200) == 49, statuses
    assert len({b["transactionId"] for b in bodies}) == 1
    assert await payment_rows(pool) == 1
    assert await pool.fetchval("SELECT tid FROM payment_processes") == bodies[0]["transactionId"]


async def test_concurrent_distinct_orders_make_distinct_payments(
    client: Client, pool: asyncpg.Pool
) -> None:
    responses = await asyncio.gather(
        *(post(client, seed(orderId=f"ORD_{i:03d}")) for i in range(50))
    )
    assert [r.status for r in responses] == [202] * 50
    tids = [(await r.json())["transactionId"] for r in responses]
    assert len(set(tids)) == 50
    assert all(TID_RE.match(t) for t in tids)
    rows = await pool.fetch("SELECT tid, public_id, order_id FROM payment_processes")
    assert len(rows) == 50
    assert {r["tid"] for r in rows} == set(tids)
    assert len({r["public_id"] for r in rows}) == 50
    assert {r["order_id"] for r in rows} == {f"ORD_{i:03d}" for i in range(50)}


# --- manual trigger -------------------------------------------------------------------------


async def deliveries(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM webhook_deliveries ORDER BY id"))


async def test_trigger_success_settles_and_webhook_arrives(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    resp = await trigger(client, tid, "SUCCESS")
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["action"] == "settled"
    assert body["tid"] == tid and body["status"] == "SUCCESS"

    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["status"] == "SUCCESS"
    assert row["approval_no"].startswith("AP")
    assert row["fail_reason"] is None
    assert row["processed_at"] is not None
    [delivery] = await deliveries(pool)
    assert delivery["event_status"] == "SUCCESS"
    assert delivery["status"] == "PENDING"
    assert delivery["payment_id"] == row["id"]

    worker = Worker(settings, repo, http, owner="t")
    assert (await worker.webhooks_pass()).delivered == 1
    [hook] = await sim.wait_for_webhooks(1, path=HOOK_PATH)
    assert hook["body"]["transactionId"] == tid
    assert hook["body"]["status"] == "SUCCESS"
    assert hook["body"]["approvalNo"] == row["approval_no"]
    assert hook["body"]["echo"] == SEED_REQUEST["echo"]
    assert hook["headers"]["webhook-id"] == delivery["event_id"]

    looked = await (await client.get(LOOKUP.format(tid))).json()
    assert looked["status"] == "SUCCESS" and looked["approvalNo"] == row["approval_no"]
    assert datetime.fromisoformat(looked["processedAt"]).utcoffset() is not None
    assert looked["webhookSentAt"] is not None


async def test_trigger_failed_settles_with_reason(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    resp = await trigger(client, tid, "FAILED")
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["action"] == "settled"
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["status"] == "FAILED"
    assert row["fail_reason"]
    assert row["approval_no"] is None
    [delivery] = await deliveries(pool)
    assert delivery["event_status"] == "FAILED"

    await Worker(settings, repo, http, owner="t").webhooks_pass()
    [hook] = await sim.wait_for_webhooks(1, path=HOOK_PATH)
    assert hook["body"]["status"] == "FAILED"
    assert hook["body"]["transactionId"] == tid
    assert row["fail_reason"] in hook["body"]["message"]
    looked = await (await client.get(LOOKUP.format(tid))).json()
    assert looked["status"] == "FAILED" and looked["failReason"] == row["fail_reason"]


async def test_trigger_on_final_payment_resends_or_conflicts(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    assert (await trigger(client, tid, "SUCCESS")).status == 202
    settled = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)

    resp = await trigger(client, tid, "SUCCESS")
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["action"] == "resent"
    first, second = await deliveries(pool)
    assert first["event_id"] == second["event_id"]
    assert second["event_status"] == "SUCCESS" and second["status"] == "PENDING"
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["approval_no"] == settled["approval_no"]
    assert row["processed_at"] == settled["processed_at"]

    before = await snapshot(pool)
    body = await rejected(pool, await trigger(client, tid, "FAILED"), 409, "status", before=before)
    assert body["currentStatus"] == "SUCCESS"

    worker = Worker(settings, repo, http, owner="t")
    assert (await worker.webhooks_pass()).delivered == 2
    hooks = await sim.wait_for_webhooks(2, path=HOOK_PATH)
    assert {h["headers"]["webhook-id"] for h in hooks} == {first["event_id"]}
    assert all(h["body"]["approvalNo"] == settled["approval_no"] for h in hooks)


async def test_trigger_on_failed_payment_with_success_conflicts(
    client: Client, pool: asyncpg.Pool
) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    assert (await trigger(client, tid, "FAILED")).status == 202
    before = await snapshot(pool)
    body = await rejected(pool, await trigger(client, tid, "SUCCESS"), 409, "status", before=before)
    assert body["currentStatus"] == "FAILED"


async def test_concurrent_triggers_settle_once(client: Client, pool: asyncpg.Pool) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    wanted = ["SUCCESS", "FAILED"] * 10
    responses = await asyncio.gather(*(trigger(client, tid, s) for s in wanted))
    bodies = [json.loads(await r.text()) for r in responses]
    settled = [
        b
        for r, b in zip(responses, bodies, strict=True)
        if r.status == 202 and b["action"] == "settled"
    ]
    assert len(settled) == 1, bodies
    final = settled[0]["status"]
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["status"] == final
    for status, resp, body in zip(wanted, responses, bodies, strict=True):
        if status == final:
            assert resp.status == 202, body
        else:
            assert resp.status == 409, body
            assert body["currentStatus"] == final
    # One delivery for the settlement, one per resend; all of the same event.
    rows = await deliveries(pool)
    assert len(rows) == 10
    assert {d["event_status"] for d in rows} == {final}
    assert len({d["event_id"] for d in rows}) == 1


@pytest.mark.parametrize(
    "tid", ["DUMMY_20260101_00000000", "x'; DROP TABLE--"], ids=["well-formed", "malformed"]
)
async def test_trigger_unknown_tid_is_404(client: Client, pool: asyncpg.Pool, tid: str) -> None:
    await accepted(client, SEED_REQUEST)
    before = await snapshot(pool)
    await rejected(pool, await trigger(client, tid, "SUCCESS"), 404, before=before)


@pytest.mark.parametrize(
    "status",
    [None, "success", "PENDING", "PROCESSING", "", "SUCCESS "],
    ids=["missing", "lowercase", "pending", "processing", "empty", "trailing-space"],
)
async def test_trigger_bad_status_is_422(
    client: Client, pool: asyncpg.Pool, status: str | None
) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    before = await snapshot(pool)
    await rejected(pool, await trigger(client, tid, status), 422, "status", before=before)
    assert await pool.fetchval("SELECT status FROM payment_processes") == "PENDING"


# --- dead letters ---------------------------------------------------------------------------


async def delivery_status(pool: asyncpg.Pool, delivery_id: int) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE id = $1", delivery_id)
    assert row is not None
    return row


async def test_dead_letter_listed_and_redelivered(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    http: aiohttp.ClientSession,
) -> None:
    await repo.endpoints.add_endpoint(MID, "test", CLOSED_HOOK, signing.new_secret())
    tid = (await accepted(client, seed(webhookUrl=CLOSED_HOOK)))["transactionId"]
    assert (await trigger(client, tid, "SUCCESS")).status == 202
    [delivery] = await deliveries(pool)
    assert delivery["url"] == CLOSED_HOOK
    did = delivery["id"]

    worker = Worker(settings.model_copy(update={"webhook_max_attempts": 2}), repo, http, owner="t")

    async def dead() -> asyncpg.Record | None:
        await worker.webhooks_pass()
        row = await delivery_status(pool, did)
        return row if row["status"] == "DEAD" else None

    row = await wait_until(dead, what="the delivery to become DEAD", timeout=WAIT_SECONDS)
    assert row["attempts"] == 2
    assert row["last_error"]
    attempts = await pool.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt_no", did
    )
    assert [a["attempt_no"] for a in attempts] == [1, 2]
    # A DEAD delivery is never claimed again on its own.
    assert (await worker.webhooks_pass()).claimed == 0

    resp = await client.get(DEAD)
    assert resp.status == 200, await resp.text()
    listing = await resp.json()
    [listed] = listing["deliveries"]
    assert listed["id"] == did
    assert listed["tid"] == tid
    assert listed["attempts"] == 2
    assert listed["status"] == "DEAD"
    assert listed["lastError"]
    assert listed["eventId"] == delivery["event_id"]
    assert listing["next"] is None
    assert (await (await client.get(f"{DEAD}?after={did}")).json())["deliveries"] == []

    resp = await client.post(REDELIVER.format(did))
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["id"] == did
    row = await delivery_status(pool, did)
    assert row["status"] == "PENDING"
    assert row["attempts"] == 0
    assert (await (await client.get(DEAD)).json())["deliveries"] == []

    # It is PENDING now, not DEAD: redelivering it again is a 404 and changes nothing.
    before = await snapshot(pool)
    await rejected(pool, await client.post(REDELIVER.format(did)), 404, before=before)
    # And it is sent again with a fresh budget (it fails again: the port is still closed).
    assert (await worker.webhooks_pass()).claimed == 1
    assert (await delivery_status(pool, did))["attempts"] == 1


async def test_dead_letters_are_paged(
    client: Client,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    http: aiohttp.ClientSession,
) -> None:
    tids = []
    await repo.endpoints.add_endpoint(MID, "test", CLOSED_HOOK, signing.new_secret())
    for order in ("ORD_A", "ORD_B", "ORD_C"):
        tid = (await accepted(client, seed(orderId=order, webhookUrl=CLOSED_HOOK)))["transactionId"]
        assert (await trigger(client, tid, "FAILED")).status == 202
        tids.append(tid)
    worker = Worker(settings.model_copy(update={"webhook_max_attempts": 1}), repo, http, owner="t")

    async def all_dead() -> bool:
        await worker.webhooks_pass()
        return bool(await pool.fetchval("SELECT bool_and(status = 'DEAD') FROM webhook_deliveries"))

    await wait_until(all_dead, what="every delivery to become DEAD", timeout=WAIT_SECONDS)
    seen: list[str] = []
    after = 0
    for _ in range(4):
        page = await (await client.get(f"{DEAD}?limit=2&after={after}")).json()
        seen += [d["tid"] for d in page["deliveries"]]
        assert all(d["attempts"] == 1 and d["eventStatus"] == "FAILED" for d in page["deliveries"])
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == tids


@pytest.mark.parametrize(
    "ident",
    ["999999", "0", "abc", "-1", "1.0", str(2**63), "9" * 30],
)
async def test_redeliver_unknown_id_is_404(client: Client, pool: asyncpg.Pool, ident: str) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    assert (await trigger(client, tid, "SUCCESS")).status == 202
    before = await snapshot(pool)
    resp = await client.post(REDELIVER.format(quote(ident, safe="")))
    await rejected(pool, resp, 404, before=before)


async def test_redeliver_non_dead_delivery_is_404(client: Client, pool: asyncpg.Pool) -> None:
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    assert (await trigger(client, tid, "SUCCESS")).status == 202
    [delivery] = await deliveries(pool)
    assert delivery["status"] == "PENDING"
    before = await snapshot(pool)
    await rejected(pool, await client.post(REDELIVER.format(delivery["id"])), 404, before=before)


async def test_empty_paging_values_mean_not_given(client: Client, pool: asyncpg.Pool) -> None:
    # The README's `?after=&limit=` pasted as it stands: the defaults, not a 422.
    await one_dead_letter(client, pool)
    for path in (DEAD, "/api/payments/unresolved", "/api/payment/unresolved"):
        plain = await client.get(path)
        assert plain.status == 200, await plain.text()
        for query in ("?after=&limit=", "?after=", "?limit=", "?after=0&limit="):
            resp = await client.get(path + query)
            assert resp.status == 200, (path, query, await resp.text())
            assert await resp.json() == await plain.json(), (path, query)
    tid = await pool.fetchval("SELECT tid FROM payment_processes")
    hooks = await client.get(f"/api/payments/{tid}/webhooks?after=&limit=")
    assert hooks.status == 200, await hooks.text()
    assert len((await hooks.json())["deliveries"]) == 1
    # Given, a value is still checked.
    await problem(await client.get(DEAD + "?after=&limit=0"), 422, "limit")


async def one_dead_letter(client: Client, pool: asyncpg.Pool) -> None:
    """A payment settled by hand whose one delivery is made DEAD."""
    tid = (await accepted(client, SEED_REQUEST))["transactionId"]
    assert (await trigger(client, tid, "FAILED")).status == 202
    await pool.execute("UPDATE webhook_deliveries SET status = 'DEAD'")
    assert len((await (await client.get(DEAD)).json())["deliveries"]) == 1


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=abc",
        "limit= ",
        "after=-1",
        "after=x",
        f"after={2**63}",
    ],
)
async def test_dead_list_bad_paging_is_422(client: Client, pool: asyncpg.Pool, query: str) -> None:
    resp = await client.get(f"{DEAD}?{query}")
    await rejected(pool, resp, 422, query.split("=")[0])


async def test_dead_list_empty(client: Client, pool: asyncpg.Pool) -> None:
    resp = await client.get(f"{DEAD}?limit=1")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"deliveries": [], "next": None}


# Inputs that str.isdigit() accepts but int() does not (or will not, past 4300 digits).
NON_ASCII_OR_HUGE_DIGITS = {"superscript-two": "\u00b2", "huge": "9" * 5000}


@pytest.mark.parametrize(
    "value", NON_ASCII_OR_HUGE_DIGITS.values(), ids=NON_ASCII_OR_HUGE_DIGITS.keys()
)
async def test_odd_digits_in_paging_are_422_not_500(
    client: Client, pool: asyncpg.Pool, value: str
) -> None:
    for name in ("limit", "after"):
        resp = await client.get(f"{DEAD}?{name}={quote(value)}")
        await rejected(pool, resp, 422, name)


@pytest.mark.parametrize(
    "value", NON_ASCII_OR_HUGE_DIGITS.values(), ids=NON_ASCII_OR_HUGE_DIGITS.keys()
)
async def test_odd_digits_in_redeliver_are_404_not_500(
    client: Client, pool: asyncpg.Pool, value: str
) -> None:
    resp = await client.post(REDELIVER.format(quote(value, safe="")))
    await rejected(pool, resp, 404)
