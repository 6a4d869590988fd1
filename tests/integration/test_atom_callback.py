"""Atom's callback route: a verified callback settles once; a forged one changes nothing."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from config.settings import Settings
from engine.models import Claimed
from engine.providers import atom_crypto
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST
from tests.integration.engine_support import tuned

CALLBACK = "/api/providers/atom/callback"


async def _decided_at_atom(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
    order_id: str,
) -> tuple[str, dict[str, Any]]:
    """An atom payment Atom decided but whose answer never reached the engine: still PENDING."""
    body = SEED_REQUEST | {"orderId": order_id, "provider": "atom"}
    tid = (await (await client.post("/api/payment", json=body)).json())["transactionId"]
    worker = Worker(tuned(settings, atom_url=f"{sim.url}/atom"), repo, http, owner="w")
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    await worker.atom.authorize(
        Claimed(row["id"], tid, row["amount"], row["currency"], row["order_id"], 1, "atom")
    )
    async with http.get(f"{sim.url}/atom/callbacks/{tid}") as resp:
        assert resp.status == 200
        return tid, await resp.json()


async def test_a_verified_callback_settles_a_pending_payment_once(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    async with http.post(f"{sim.url}/atom/admin/config", json={"success_rate": 1.0}) as resp:
        assert resp.status == 200
    tid, callback = await _decided_at_atom(client, settings, repo, http, sim, pool, "ORD_CB1")
    # No API key: the callback's own signature is what authenticates it.
    resp = await client.post(CALLBACK, json=callback, headers={"Authorization": ""})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"tid": tid, "status": "SUCCESS", "settled": True}
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["status"] == "SUCCESS" and row["approval_no"]
    assert row["last_actor"] == "provider:atom"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE payment_id = $1", row["id"]
        )
        == 1
    )
    again = await client.post(CALLBACK, json=callback, headers={"Authorization": ""})
    assert again.status == 200 and (await again.json())["settled"] is False
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 1


async def test_a_forged_callback_is_refused_counted_and_changes_nothing(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    async with http.post(f"{sim.url}/atom/admin/config", json={"success_rate": 0.0}) as r:
        assert r.status == 200
    tid, callback = await _decided_at_atom(client, settings, repo, http, sim, pool, "ORD_CB2")
    # Someone who can encrypt (the key leaked) but cannot sign turns the decline into an
    # approval: it decrypts fine, and its signature is what gives it away.
    key = atom_crypto.derive_key(settings.atom_res_enc_key)
    answer = json.loads(atom_crypto.decrypt(key, callback["encData"]))
    assert answer["statusCode"] == "OTS0600"
    answer |= {"statusCode": "OTS0000", "atomTxnId": "99999999999999"}
    forged = {"encData": atom_crypto.encrypt(key, json.dumps(answer).encode())}
    labels = {"provider": "atom"}
    before = REGISTRY.get_sample_value("engine_signature_failures_total", labels) or 0.0
    refused = {"provider": "atom", "reason": "signature"}
    refused_before = REGISTRY.get_sample_value("engine_callbacks_refused_total", refused)
    resp = await client.post(CALLBACK, json=forged, headers={"Authorization": ""})
    assert resp.status == 401, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert REGISTRY.get_sample_value("engine_signature_failures_total", labels) == before + 1
    assert refused_before is not None  # listed at 0 before the first refusal
    assert (
        REGISTRY.get_sample_value("engine_callbacks_refused_total", refused) == refused_before + 1
    )
    row = await pool.fetchrow("SELECT status FROM payment_processes WHERE tid = $1", tid)
    assert row["status"] == "PENDING"
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    for bad, status in (({}, 422), ({"encData": 5}, 422), ({"encData": "zz"}, 401)):
        r = await client.post(CALLBACK, json=bad, headers={"Authorization": ""})
        assert r.status == status, bad
