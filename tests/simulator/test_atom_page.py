"""The simulator's Atom payment page over real HTTP: a hosted AUTH gets a token (nothing
charged), the page decides once, calls the merchant back and sends the browser back."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulator.atom_wire import sign, unseal
from simulator.server import SimulatorHandle, running
from tests.simulator.test_atom import KEYS, SETTINGS, envelope, get, post


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with running(SETTINGS) as handle:
        yield handle


@pytest.fixture
async def merchant(aiohttp_server: Any) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A merchant's callback receiver: its URL and what it received."""
    received: list[dict[str, Any]] = []

    async def callback(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/callback", callback)
    server = await aiohttp_server(app)
    yield str(server.make_url("/callback")), received


@pytest.fixture
async def http(sim: SimulatorHandle) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(sim.url) as session:
        yield session


def hosted(txn_id: str, callback_url: str) -> dict[str, str]:
    urls = {"returnUrl": "https://gw.example/back?x=1", "callbackUrl": callback_url}
    return envelope(txn_id, changed=urls)


async def test_a_hosted_auth_answers_a_signed_token_and_charges_nothing(
    http: aiohttp.ClientSession, sim: SimulatorHandle, merchant: tuple[str, list[Any]]
) -> None:
    status, body = await post(http, "auth", hosted("DUMMY_20260101_00000101", merchant[0]))
    assert status == 200
    answer = unseal(KEYS.res_enc_key, body["encData"])
    assert answer["statusCode"] == "OTS0100" and answer["atomTxnId"] == ""
    token = answer["atomTokenId"]
    assert answer["actionUrl"] == f"{sim.url}/atom/pay/{token}"
    expected = sign(
        KEYS.res_hash_key, KEYS.merch_id, token, answer["merchTxnId"], "OTS0100", "1000", "KRW"
    )
    assert answer["signature"] == expected
    assert (await get(http, "ledger"))["count"] == 0
    # STATUS says the same until the customer acts.
    _, inquired = await post(http, "status", envelope("DUMMY_20260101_00000101", txn_type="STATUS"))
    assert unseal(KEYS.res_enc_key, inquired["encData"])["atomTokenId"] == token


async def test_the_page_decides_once_calls_back_and_redirects(
    http: aiohttp.ClientSession, merchant: tuple[str, list[Any]]
) -> None:
    url, received = merchant
    _, body = await post(http, "auth", hosted("DUMMY_20260101_00000102", url))
    token = unseal(KEYS.res_enc_key, body["encData"])["atomTokenId"]
    async with http.get(f"/atom/pay/{token}") as page:
        assert page.status == 200 and "1,000 KRW" in await page.text()
    async with http.post(f"/atom/pay/{token}/approve", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "https://gw.example/back?x=1"
    assert len(received) == 1 and received[0]["merchId"] == KEYS.merch_id
    answer = unseal(KEYS.res_enc_key, received[0]["encData"])
    assert answer["statusCode"] == "OTS0000" and answer["paymentMethod"] == "card"
    # A second choice changes nothing: still approved, no second callback, one charge.
    async with http.post(f"/atom/pay/{token}/decline", allow_redirects=False) as resp:
        assert resp.status == 303
    assert len(received) == 1 and (await get(http, "ledger"))["count"] == 1
    async with http.get(f"/atom/pay/{token}") as page:
        assert "approved already" in await page.text()


async def test_unknown_and_expired_tokens_cannot_be_paid(
    http: aiohttp.ClientSession, merchant: tuple[str, list[Any]]
) -> None:
    async with http.get("/atom/pay/AT<script>") as page:
        assert page.status == 404 and "<script>" not in await page.text()
    async with http.post("/atom/pay/ATnope/approve", allow_redirects=False) as resp:
        assert resp.status == 404
    status, _ = await post(http, "admin/config", {"token_ttl_seconds": 0.0})
    assert status == 200
    _, body = await post(http, "auth", hosted("DUMMY_20260101_00000103", merchant[0]))
    token = unseal(KEYS.res_enc_key, body["encData"])["atomTokenId"]
    async with http.post(f"/atom/pay/{token}/approve", allow_redirects=False) as resp:
        assert resp.status == 410
    assert merchant[1] == [] and (await get(http, "ledger"))["count"] == 0
    status, answer = await post(http, "admin/config", {"callback": "sometimes"})
    assert status == 400, answer
