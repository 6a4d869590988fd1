"""/metrics: public, Prometheus text, counting what the engine does and what the DB holds."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from engine import metrics
from engine.store.repository import Repository
from engine.worker.process import Worker
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


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _sample(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, frozenset(labels.items())))


async def test_every_known_counter_series_is_listed_before_it_counts(client: TestClient) -> None:
    # A series that appears only at its first count is invisible to rate() and alerts until
    # then: every label value known in advance is there from the start (at 0 in a fresh
    # process; tests/e2e/test_startup.py sees the zeros).
    samples = _samples(await _scrape(client))
    names = [c._name for c, _ in metrics.KNOWN_LABELS]
    assert "engine_payments_settled" in names and "engine_callbacks_refused" in names
    for counter, combinations in metrics.KNOWN_LABELS:
        for values in combinations:
            labels = frozenset(zip(counter._labelnames, values, strict=True))
            assert (f"{counter._name}_total", labels) in samples, (counter._name, values)


async def test_settling_by_hand_and_refused_callbacks_are_counted(client: TestClient) -> None:
    tids = []
    for i in range(2):
        resp = await client.post("/api/payments", json=SEED_REQUEST | {"orderId": f"ORD_T{i}"})
        assert resp.status == 202, await resp.text()
        tids.append((await resp.json())["transactionId"])
    before = await _scrape(client)
    for tid, status in zip(tids, ("SUCCESS", "FAILED"), strict=True):
        resp = await client.post(f"/api/payments/{tid}/webhook-trigger?status={status}")
        assert resp.status == 202 and (await resp.json())["action"] == "settled"
    # A resend settles nothing, so it counts nothing.
    resp = await client.post(f"/api/payments/{tids[0]}/webhook-trigger?status=SUCCESS")
    assert resp.status == 202 and (await resp.json())["action"] == "resent"
    # A callback that does not even decrypt is refused, and counted as such.
    refused = await client.post(
        "/api/providers/atom/callback", json={"encData": "zz"}, headers={"Authorization": ""}
    )
    assert refused.status == 401
    after = await _scrape(client)
    for name, labels in [
        ("engine_payments_settled_total", {"status": "SUCCESS", "provider": "manual"}),
        ("engine_payments_settled_total", {"status": "FAILED", "provider": "manual"}),
        ("engine_callbacks_refused_total", {"provider": "atom", "reason": "unreadable"}),
    ]:
        assert _sample(after, name, **labels) == (_sample(before, name, **labels) or 0) + 1, (
            name,
            labels,
        )
    for unchanged in ("card", "atom"):
        labels = {"status": "SUCCESS", "provider": unchanged}
        assert _sample(after, "engine_payments_settled_total", **labels) == _sample(
            before, "engine_payments_settled_total", **labels
        )
    labels = {"provider": "atom", "reason": "signature"}
    assert _sample(after, "engine_callbacks_refused_total", **labels) == _sample(
        before, "engine_callbacks_refused_total", **labels
    )
