"""/metrics: public, Prometheus text, counting what the engine does and what the DB holds."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from config.settings import Settings
from engine.repository import Repository
from engine.worker import Worker
from simulator.server import SimulatorHandle
from tests.conftest import SEED_REQUEST


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _scrape(client: TestClient) -> str:
    resp = await client.get("/metrics", headers={"Authorization": ""})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def test_metrics_count_settlements_states_and_auth_failures(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
) -> None:
    async with http.post(f"{sim.url}/acquirer/admin/config", json={"success_rate": 1.0}) as r:
        assert r.status == 200
    for i in range(3):
        body = SEED_REQUEST | {"orderId": f"ORD_M{i}"}
        assert (await client.post("/api/payment", json=body)).status == 202
    text = await _scrape(client)
    assert 'engine_payments_in_state{state="PENDING"} 3.0' in text
    assert "engine_oldest_pending_age_seconds" in text

    settled_before = _value("engine_payments_settled_total", status="SUCCESS", provider="card")
    authorize_before = _value(
        "engine_provider_call_seconds_count",
        provider="card",
        operation="authorize",
        result="success",
    )
    assert (await Worker(settings, repo, http, owner="w").payments_pass()).settled == 3
    assert _value("engine_payments_settled_total", status="SUCCESS", provider="card") == (
        settled_before + 3
    )
    assert (
        _value(
            "engine_provider_call_seconds_count",
            provider="card",
            operation="authorize",
            result="success",
        )
        == authorize_before + 3
    )
    text = await _scrape(client)
    assert 'engine_payments_in_state{state="PENDING"} 0.0' in text
    assert 'engine_webhooks_in_state{state="PENDING"} 3.0' in text

    missing_before = _value("engine_auth_failures_total", reason="missing")
    anonymous = await client.get(
        "/api/payment/transaction/DUMMY_20260101_00000000", headers={"Authorization": ""}
    )
    assert anonymous.status == 401
    assert _value("engine_auth_failures_total", reason="missing") == missing_before + 1
    assert 'route="/api/payment"' in await _scrape(client)
