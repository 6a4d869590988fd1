"""The edges of the web process: body deadlines and budgets, throttling, media types, logs.

Raw-socket tests run the app on the web process's own server (api/server.py), so what the
HTTP parser refuses is answered exactly as in production.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from api import auth, server
from api.app import create_app
from config.settings import Settings
from engine import logs, money
from engine.providers import atom_crypto
from engine.worker.process import Worker
from tests.conftest import SEED_REQUEST
from tests.integration.engine_support import tuned
from tests.waiting import wait_until

PAY = "/api/payment"
CALLBACK = "/api/providers/atom/callback"
PROBLEM = "application/problem+json"
REPO = Path(__file__).resolve().parents[2]


def seed(order_id: str, **changes: Any) -> dict[str, Any]:
    """The seed's request for another order."""
    return SEED_REQUEST | {"orderId": order_id} | changes


async def problem(resp: aiohttp.ClientResponse, status: int, field: str | None) -> Any:
    """The problem+json body of `resp`, after checking its status and field."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.headers["Content-Type"].startswith(PROBLEM), resp.headers
    body = json.loads(text)
    assert body["status"] == status and body.get("field") == field, body
    return body


# --- raw HTTP on the web process's own server -------------------------------------------


class Raw:
    """The app served by api/server.py on a free port, spoken to in raw bytes."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def send(self, *parts: bytes, pause: float = 0.0) -> tuple[int, dict[str, str], bytes]:
        """Write `parts` (pausing between them), then read the whole answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for i, part in enumerate(parts):
                if i and pause:
                    await asyncio.sleep(pause)  # a second packet, so aiohttp reads it apart
                writer.write(part)
                await writer.drain()
            # Up to the answer's own length: a connection whose body never came may linger.
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(headers.get("Content-Length", "0"))
            body = await asyncio.wait_for(reader.readexactly(length), 10)
        finally:
            writer.close()
        return int(lines[0].split()[1]), headers, body


def request(path: str, body: bytes, key: str | None, **headers: str) -> bytes:
    """A POST with `Connection: close`, Content-Length unless given, and the headers given."""
    head = {"Host": "engine", "Connection": "close"}
    if key:
        head["Authorization"] = f"Bearer {key}"
    if "Transfer-Encoding" not in headers:
        head["Content-Length"] = str(len(body))
    head |= {k.replace("_", "-"): v for k, v in headers.items()}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


@pytest.fixture
async def raw(settings: Settings, api_key: str) -> AsyncIterator[Raw]:
    """The intake on api/server.py's runner, as `python -m api` serves it."""
    runner = server.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    try:
        yield Raw(sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


def problem_of(
    status: int, headers: dict[str, str], body: bytes, want: int, field: str | None
) -> dict[str, Any]:
    """The problem+json of a raw answer, checked like problem()."""
    assert status == want, (status, body)
    assert headers["Content-Type"].startswith(PROBLEM), headers
    parsed: dict[str, Any] = json.loads(body)
    assert parsed["status"] == want and parsed.get("field") == field, parsed
    return parsed


# --- F: content types and encodings -------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/json; charset=utf-16",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "application/json; charset=latin-1",
    ],
)
async def test_a_body_that_is_not_json_in_utf8_is_415_and_not_charged(
    client: TestClient, pool: asyncpg.Pool, content_type: str | None
) -> None:
    data = json.dumps(seed("ORD_CT")).encode()
    if content_type and "utf-16" in content_type:
        data = json.dumps(seed("ORD_CT")).encode("utf-16")
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await client.post(PAY, data=data, headers=headers)
    await problem(resp, 415, "Content-Type")
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/merchant+json",
    ],
)
async def test_json_in_utf8_is_accepted(client: TestClient, content_type: str) -> None:
    order = f"ORD_OK_{abs(hash(content_type)) % 10**8}"
    data = json.dumps(seed(order)).encode()
    resp = await client.post(PAY, data=data, headers={"Content-Type": content_type})
    assert resp.status == 202, await resp.text()


async def test_an_empty_key_request_needs_no_content_type(client: TestClient) -> None:
    resp = await client.post("/api/keys", data=b"", skip_auto_headers=("Content-Type",))
    assert resp.status == 201, await resp.text()
    assert "Content-Type" not in resp.request_info.headers
    # A body, though, must say it is JSON.
    await problem(await client.post("/api/keys", data=b"{}"), 415, "Content-Type")


async def test_gzip_body_is_decoded_and_a_false_gzip_body_is_400(raw: Raw, api_key: str) -> None:
    good = gzip.compress(json.dumps(seed("ORD_GZ")).encode())
    ok = await raw.send(
        request(PAY, good, api_key, Content_Type="application/json", Content_Encoding="gzip")
    )
    assert ok[0] == 202, ok
    plain = json.dumps(seed("ORD_GZ2")).encode()
    for encoding in ("gzip", "deflate"):
        head = request(
            PAY, plain, api_key, Content_Type="application/json", Content_Encoding=encoding
        )
        # In one packet with the headers, aiohttp's parser finds it; in a later one, the read.
        problem_of(*await raw.send(head), 400, "body")
        split = len(head) - len(plain)
        problem_of(*await raw.send(head[:split], head[split:], pause=0.1), 400, "body")


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "x-gzip", "gzip, br", "foo"])
async def test_an_unsupported_content_encoding_is_415_naming_no_library(
    raw: Raw, api_key: str, encoding: str
) -> None:
    data = json.dumps(seed("ORD_BR")).encode()
    answer = problem_of(
        *await raw.send(
            request(PAY, data, api_key, Content_Type="application/json", Content_Encoding=encoding)
        ),
        415,
        "Content-Encoding",
    )
    assert "install" not in json.dumps(answer).lower()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "oversized header",
            b"POST /api/payment HTTP/1.1\r\nHost: e\r\nX-Big: "
            + b"a" * 9000
            + b"\r\nContent-Length: 2\r\n\r\n{}",
        ),
        (
            "bad Content-Length",
            b"POST /api/payment HTTP/1.1\r\nHost: e\r\nContent-Length: abc\r\n\r\n{}",
        ),
        (
            "two Content-Lengths",
            b"POST /api/payment HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n"
            b"Content-Length: 3\r\n\r\n{}",
        ),
        (
            "bad chunk",
            b"POST /api/payment HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
        ),
        (
            "chunked and a length",
            b"POST /api/payment HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: "
            b"chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        ),
        ("bad method", b"P@ST /api/payment HTTP/1.1\r\nHost: e\r\n\r\n"),
        ("bad version", b"POST /api/payment HTTP/9.9\r\nHost: e\r\nContent-Length: 0\r\n\r\n"),
    ],
)
async def test_what_the_http_parser_refuses_is_problem_json(
    raw: Raw, name: str, message: bytes
) -> None:
    status, headers, body = await raw.send(message)
    assert status == 400, (name, body)
    assert headers["Content-Type"].startswith(PROBLEM), (name, headers)
    parsed = json.loads(body)
    assert parsed["status"] == 400 and parsed["title"] == "Bad Request", parsed
    assert b"aiohttp" not in body and b"Traceback" not in body


# --- E: body deadlines and the public budget ----------------------------------------------


async def test_every_body_read_has_a_deadline_the_callback_included(
    aiohttp_client: AiohttpClient, settings: Settings, api_key: str
) -> None:
    client = await aiohttp_client(create_app(tuned(settings, body_read_timeout_seconds=0.3)))
    port = client.port
    assert port is not None
    slow = Raw(port)
    for path, key in (
        (CALLBACK, None),
        (PAY, api_key),
        ("/api/payments/DUMMY_20260101_00000000/refunds", api_key),
    ):
        head = request(
            path,
            b'{"encData": "00',
            key,
            Content_Type="application/json",
            Idempotency_Key="k1",
            Content_Length="100",
        )
        problem_of(*await slow.send(head), 408, "body")


async def test_300_slow_callback_bodies_do_not_make_a_merchant_wait(
    aiohttp_client: AiohttpClient, settings: Settings, api_key: str
) -> None:
    # The default budgets (256 merchant, 64 public requests), a body deadline short enough
    # to see the slow ones end within the test.
    app = create_app(tuned(settings, body_read_timeout_seconds=4.0))
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {api_key}"})
    assert client.port is not None
    head = request(CALLBACK, b"", None, Content_Type="application/json", Content_Length="1000")
    conns = [await asyncio.open_connection("127.0.0.1", client.port) for _ in range(300)]
    for _, writer in conns:
        writer.write(head)  # the headers, and never the promised body
    await asyncio.gather(*(w.drain() for _, w in conns))

    async def status(reader: asyncio.StreamReader) -> int:
        line = await asyncio.wait_for(reader.readline(), 15)
        return int(line.split()[1]) if line else 0

    statuses = [asyncio.create_task(status(r)) for r, _ in conns]
    # Those past the public budget are turned away at once; the rest hold a slot each.
    await wait_until(
        lambda: sum(t.done() for t in statuses) >= 300 - 64,
        what="the callbacks over the public budget answered",
        timeout=10,
    )
    held = [t for t in statuses if not t.done()]
    assert len(held) == 64
    resp = await client.post(PAY, json=seed("ORD_SLOW"))
    assert resp.status == 202, await resp.text()
    assert all(t.result() == 503 for t in statuses if t.done())
    # And the slow ones run out of time: 408, or dropped.
    assert set(await asyncio.gather(*held)) <= {408, 0}
    for _, writer in conns:
        writer.close()


# --- E: auth throttling -------------------------------------------------------------------


async def test_failed_authentication_is_throttled_per_address_not_a_valid_key(
    client: TestClient,
) -> None:
    bad = {"Authorization": "Bearer sk_test_" + "A" * 43}
    for i in range(30):
        resp = await client.get("/api/keys", headers=bad)
        assert resp.status == 401, (i, await resp.text())
    throttled = await problem(await client.get("/api/keys", headers=bad), 429, "Authorization")
    assert throttled["type"] == "/problems/auth-throttled"
    retry = (await client.get("/api/keys", headers={"Authorization": "nonsense"})).headers
    assert int(retry["Retry-After"]) >= 1
    # A valid key from the same address is never throttled by this.
    for _ in range(3):
        assert (await client.get("/api/keys")).status == 200


def test_the_throttle_stays_bounded_whatever_the_addresses() -> None:
    throttle = auth.FailureThrottle(per_minute=30, max_clients=1_000)
    for i in range(100_000):
        throttle.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        assert len(throttle) <= 1_000
    assert len(throttle) == 1_000
    for _ in range(30):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") == 2  # one more failure every two seconds
    assert throttle.retry_after("192.0.2.2") is None


# --- E: the callback's one 401 ------------------------------------------------------------


async def test_every_unverifiable_callback_gets_the_same_401(
    client: TestClient, settings: Settings
) -> None:
    key = atom_crypto.derive_key(settings.atom_res_enc_key)
    fields = {
        "merchTxnId": "DUMMY_20260101_00000001",
        "atomTxnId": "1",
        "statusCode": "OTS0000",
        "amount": "100",
        "currency": "KRW",
        "signature": "00" * 64,
    }
    bad_signature = atom_crypto.encrypt(key, json.dumps(fields).encode())
    wrong_key = atom_crypto.encrypt(atom_crypto.derive_key("another key"), b'{"a": 1}')
    last = int(bad_signature[-2:], 16)
    bad_padding = bad_signature[:-2] + f"{last ^ 0xFF:02X}"
    cases = {
        "bad padding": bad_padding,
        "wrong key": wrong_key,
        "bad hex": "ZZ" * 16,
        "bad signature": bad_signature,
        "truncated": bad_signature[:-2],
        "not json": atom_crypto.encrypt(key, b"not json"),
    }
    bodies = {}
    for name, enc in cases.items():
        resp = await client.post(CALLBACK, json={"encData": enc}, headers={"Authorization": ""})
        assert resp.status == 401, (name, await resp.text())
        bodies[name] = await resp.read()
    assert len(set(bodies.values())) == 1, bodies
    assert b"padding" not in bodies["bad padding"] and b"signature" not in bodies["bad padding"]


# --- E: log lines --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_control_characters_in_input_cannot_forge_or_paint_a_log_line(fmt: str) -> None:
    log = structlog.wrap_logger(structlog.ReturnLogger(), processors=logs.processors(fmt))
    hostile = "ORD\n2026-01-01 [info] payment.settled forged=1\x1b[31m\r\x85\x00"
    line = log.info("payment.received", order_id=hostile, **{"k\ney": "v\x07"})
    assert isinstance(line, str)
    assert "\n" not in line and "\r" not in line
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line), repr(line)
    # The console shows values as repr() does, doubling each backslash.
    text = json.loads(line)["order_id"] if fmt == "json" else line.replace("\\\\", "\\")
    assert "ORD\\n2026-01-01" in text and "\\x1b[31m" in text and "\\x85" in text


# --- E: free text and currencies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("orderId", "ORD\nX"),
        ("userPublicId", "USR\x1b[31m"),
        ("orderName", "Tea\rCake"),
        ("orderName", "Tea\x85"),
        ("orderId", "ORD\tX"),
    ],
)
async def test_free_text_with_control_characters_is_422(
    client: TestClient, field: str, value: str
) -> None:
    resp = await client.post(PAY, json=seed("ORD_CTL") | {field: value})
    body = await problem(resp, 422, field)
    assert "control" in body["detail"]


async def test_a_refund_reason_with_control_characters_is_422(client: TestClient) -> None:
    resp = await client.post(
        "/api/payments/DUMMY_20260101_00000000/refunds",
        json={"amount": 1, "reason": "oops\n[info] refunded"},
        headers={"Idempotency-Key": "ctl-1"},
    )
    await problem(resp, 422, "reason")


@pytest.mark.parametrize("code", ["XYZ", "ABC", "XAU", "XTS", "XXX", "DEM", "krw"])
async def test_a_currency_that_is_no_money_in_use_is_422(client: TestClient, code: str) -> None:
    await problem(await client.post(PAY, json=seed("ORD_CUR", currency=code)), 422, "currency")


async def test_real_currencies_are_accepted_whatever_their_minor_unit(client: TestClient) -> None:
    for i, code in enumerate(("KRW", "JPY", "USD", "BHD")):
        resp = await client.post(PAY, json=seed(f"ORD_CUR{i}", currency=code, amount=12345))
        assert resp.status == 202, await resp.text()


def test_minor_units_and_the_default_currency_come_from_babel() -> None:
    assert [money.minor_unit_exponent(c) for c in ("KRW", "JPY", "USD", "BHD")] == [0, 0, 2, 3]
    assert money.is_currency("EUR") and not money.is_currency("XYZ")
    with pytest.raises(ValueError, match="ISO 4217"):
        money.minor_unit_exponent("XYZ")
    with pytest.raises(ValueError, match="ISO 4217"):
        Settings(default_currency="XYZ")


# --- E: /metrics ----------------------------------------------------------------------------


async def test_metrics_need_the_bearer_token_when_one_is_set(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    token = "m" * 32
    client = await aiohttp_client(create_app(tuned(settings, metrics_token=token)))
    await problem(await client.get("/metrics"), 401, "Authorization")
    wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {'n' * 32}"})
    await problem(wrong, 401, "Authorization")
    ok = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200 and "engine_" in await ok.text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_metrics_on_their_own_port_are_not_on_the_merchant_port(
    database_url: str, tmp_path: Path
) -> None:
    web_port, metrics_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")} | {
        "DATABASE_URL": database_url,
        "ENGINE_DATA_DIR": str(tmp_path),
        "ENGINE_WEB_PORT": str(web_port),
        "ENGINE_METRICS_PORT": str(metrics_port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api"], cwd=REPO, env=env, stderr=subprocess.PIPE
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                assert proc.poll() is None, "python -m api exited"
                try:
                    async with http.get(f"http://127.0.0.1:{web_port}/health") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(up, what="python -m api serving", timeout=30, interval=0.1)
            async with http.get(f"http://127.0.0.1:{web_port}/metrics") as r:
                assert r.status == 404 and r.content_type == PROBLEM
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                assert r.status == 200 and "engine_payments_in_state" in await r.text()
            async with http.get(f"http://127.0.0.1:{metrics_port}/health") as r:
                assert r.status == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # closes the pipe too
        assert proc.returncode == 0, err


# --- E: merchants see reason codes, never a provider's text --------------------------------


async def test_a_providers_own_words_never_reach_the_merchant(
    client: TestClient,
    settings: Settings,
    repo: Any,
    http: aiohttp.ClientSession,
    aiohttp_server: Any,
) -> None:
    chatty = "Declined: card 4111-XXXX, call +1-555-0100 <b>now</b>\n"

    async def acquirer(request: web.Request) -> web.Response:
        return web.json_response({"status": "DECLINED", "reason": chatty})

    app = web.Application()
    app.router.add_post("/acquirer/authorize", acquirer)
    fake = await aiohttp_server(app)
    tid = (await (await client.post(PAY, json=seed("ORD_WORDS"))).json())["transactionId"]
    worker = Worker(
        tuned(settings, acquirer_url=f"http://127.0.0.1:{fake.port}/acquirer"),
        repo,
        http,
        owner="w",
    )
    assert (await worker.payments_pass()).settled == 1
    looked = await (await client.get(f"/api/payment/transaction/{tid}")).json()
    assert (looked["status"], looked["failReason"]) == ("FAILED", "DECLINED")
