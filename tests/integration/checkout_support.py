"""What the checkout tests share: keys, a signed-in customer with a card, the app's calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.customers import accounts
from engine.store.repository import Repository
from simulator.server import SimulatorHandle
from tests.conftest import MID

Client = TestClient[Any, Any]
SESSIONS = "/api/checkout/sessions"
PUBLIC = "/api/public/checkout/sessions/{}"
APPROVES = "4242424242424242"
DECLINES = "4000000000000002"
ORDER = {"amount": 10000, "currency": "KRW", "orderId": "ORD-1", "orderName": "Hamster food"}


async def publishable(
    repo: Repository, settings: Settings, mid: str = MID, mode: str = "test"
) -> str:
    """A publishable key of `mid` in `mode`."""
    issued = await repo.merchants.issue_key(mid, mode, settings.api_key_secret, kind="publishable")
    return issued.key


@dataclass
class Shopper:
    """A signed-in customer of the app: its cookie token and form token."""

    email: str
    token: str
    csrf: str

    def headers(self, *, json: bool = True) -> dict[str, str]:
        """Headers of the app's calls: the cookie, the CSRF token, JSON please."""
        headers = {"Cookie": f"hamster_app={self.token}", "X-CSRF-Token": self.csrf}
        if json:
            headers["Accept"] = "application/json"
        return headers


async def shopper(
    repo: Repository, sim: SimulatorHandle, email: str = "jane@example.com", number: str = APPROVES
) -> Shopper:
    """A customer with a card registered at the simulator's acquirer, signed in."""
    customer = await accounts.sign_up(repo.customers, email, "correct horse battery")
    assert customer is not None
    async with aiohttp.ClientSession() as http:
        card = {"number": number, "expMonth": 12, "expYear": 2030, "cvc": "123"}
        await accounts.register_card(repo.customers, http, f"{sim.url}/acquirer", customer, card)
    signed = await accounts.sign_in(repo.customers, email, "correct horse battery")
    assert signed is not None
    return Shopper(email, signed.token, signed.csrf)


async def create(client: Client, **changes: Any) -> dict[str, Any]:
    """A new session (201) of the client's merchant."""
    resp = await client.post(SESSIONS, json=ORDER | changes)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def view(client: Client, pk: str, session: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The SDK's view of a session, with the publishable key."""
    resp = await client.get(
        PUBLIC.format(session["id"]),
        params={"clientSecret": session["clientSecret"]},
        headers={"Authorization": f"Bearer {pk}"},
    )
    return resp.status, await resp.json()


async def act(client: Client, who: Shopper, session_id: str, action: str) -> tuple[int, Any]:
    """The app's confirm or cancel, as JSON."""
    resp = await client.post(f"/app/pay/{session_id}/{action}", headers=who.headers())
    return resp.status, await resp.json()
