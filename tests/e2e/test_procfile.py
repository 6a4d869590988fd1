"""The whole system as `make run` starts it: the Procfile under supervisord, real processes."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import MID, SEED_REQUEST
from tests.e2e.conftest import Processes, free_port, make_run, make_run_env, wait_until
from tests.merchant_cli import bearer

pytestmark = pytest.mark.e2e


async def _ok(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_seed_curl_flow_through_the_procfile(
    processes: Processes, database_url: str, tmp_path: Path
) -> None:
    web_port, sim_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    data = tmp_path / "data"
    env = make_run_env(
        data,
        DATABASE_URL=database_url,
        ENGINE_WEB_PORT=str(web_port),
        SIM_PORT=str(sim_port),
        ENGINE_ACQUIRER_URL=f"{sim}/acquirer",
        ENGINE_DEFAULT_WEBHOOK_URL=f"{sim}/api/webhook/pg/DUMMY",
        ENGINE_WEBHOOK_ALLOWED_HOSTS=f"127.0.0.1:{sim_port}",
    )
    # make run creates the seed's merchant (the demo merchant) and keeps its key in the data
    # folder; it also sets PROMETHEUS_MULTIPROC_DIR, so the web's /metrics adds up the worker's.
    run = processes.start("make-run", make_run(), env)
    web = f"http://127.0.0.1:{web_port}"
    async with aiohttp.ClientSession() as bare:
        await wait_until(
            lambda: _ok(bare, f"{web}/health"),
            timeout=60,
            what=f"web /health\n{processes.output()}",
        )
    merchant = json.loads((data / "demo-merchant.json").read_text())
    assert merchant["mid"] == MID
    async with aiohttp.ClientSession(headers=bearer(merchant["apiKey"])) as s:
        await wait_until(lambda: _ok(s, f"{sim}/health"), timeout=30, what="simulator /health")
        # The demo merchant has no endpoint of its own: its webhooks go to the operator's
        # receiver (the simulator), signed with the operator's secret, which it accepts.
        assert "webhookSecret" not in merchant
        # Without the key the seed's curl is refused, and nothing is stored.
        async with s.post(
            f"{web}/api/payment", json=SEED_REQUEST, headers={"Authorization": ""}
        ) as resp:
            assert resp.status == 401, await resp.text()
            assert resp.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        # The seed's curl, as written in the seed, with the merchant's key.
        async with s.post(f"{web}/api/payment", json=SEED_REQUEST) as resp:
            assert resp.status == 202, await resp.text()
            ack = await resp.json()
        tid = ack["transactionId"]
        assert ack["status"] == "PENDING" and ack["code"] == "ACK_OK"

        async def webhook() -> dict[str, object] | None:
            async with s.get(f"{sim}/api/webhook/pg/DUMMY") as resp:
                hooks = (await resp.json())["webhooks"]
            return next((h for h in hooks if h["body"]["transactionId"] == tid), None)

        # The seed polls every 3 s after 5 s; NOTIFY makes this well under a second.
        hook = await wait_until(
            webhook, timeout=10, what=f"webhook for {tid}\n{processes.output()}"
        )
        assert isinstance(hook, dict)
        body = hook["body"]
        assert body["status"] in ("SUCCESS", "FAILED")
        assert body["echo"] == SEED_REQUEST["echo"]

        async def delivered() -> dict[str, object] | None:
            async with s.get(f"{web}/api/payment/transaction/{tid}") as resp:
                got = await resp.json()
            return got if got["webhookSentAt"] else None

        looked = await wait_until(delivered, timeout=10, what="webhookSentAt recorded")
        assert isinstance(looked, dict)
        assert looked["status"] == body["status"]
        for key in ("requestedAt", "processedAt", "webhookSentAt"):
            assert datetime.fromisoformat(str(looked[key])).utcoffset() is not None

        # Counted by the worker process, served by the web process.
        async with s.get(f"{web}/metrics") as resp:
            assert resp.status == 200
            scraped = await resp.text()
        settled = f'engine_payments_settled_total{{provider="card",status="{body["status"]}"}} 1.0'
        assert settled in scraped, scraped[:2000]
        assert 'engine_webhook_attempts_total{result="delivered"} 1.0' in scraped
        assert 'engine_http_request_seconds_count{method="POST",route="/api/payment"' in scraped

    os.killpg(run.pid, signal.SIGTERM)
    assert run.wait(timeout=30) is not None
    conn = await asyncpg.connect(database_url)
    try:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING'"
            )
            == 0
        )
        # The refused request stored nothing; the accepted one is the merchant's.
        rows = await conn.fetch("SELECT tid, mid FROM payment_processes")
        assert [(r["tid"], r["mid"]) for r in rows] == [(tid, MID)]
    finally:
        await conn.close()
