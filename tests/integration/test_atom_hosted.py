"""Atom's hosted payment page (seed 001): a checkout session paid through Atom goes
REQUIRES_ACTION with Atom's token and page; the customer approves, declines or walks away
there; Atom's signed callback (or our inquiry) settles it once; an abandoned token expires
uncharged; a late callback is recorded and flagged; a forged one changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import structlog
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from api.app import create_app
from config.settings import Settings
from engine.checkout import returns
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.backoffice.support import fast, log_in, make_user
from tests.conftest import MID
from tests.integration.checkout_support import PUBLIC, create, publishable, view
from tests.integration.engine_support import tuned
from tests.waiting import wait_until

Client = TestClient[Any, Any]
SUCCESS_URL = "https://shop.example/paid"
CANCEL_URL = "https://shop.example/not-paid"


class Hosted:
    """One checkout session being paid at Atom's page, and what the test drives it with."""

    def __init__(
        self,
        client: Client,
        worker: Worker,
        pk: str,
        session: dict[str, Any],
        http: aiohttp.ClientSession,
        sim: SimulatorHandle,
    ) -> None:
        self.client, self.worker, self.pk, self.session = client, worker, pk, session
        self.http, self.sim = http, sim
        self.tid = ""
        self.action_url = ""

    async def start(self) -> dict[str, Any]:
        """The SDK's pay call, then the worker's AUTH: the view names Atom's page."""
        resp = await self.client.post(
            PUBLIC.format(self.session["id"]) + "/pay",
            params={"clientSecret": self.session["clientSecret"]},
            json={"method": "atom"},
            headers={"Authorization": f"Bearer {self.pk}"},
        )
        assert resp.status == 202, await resp.text()
        self.tid = (await resp.json())["payment"]["tid"]
        assert (await self.worker.payments_pass()).claimed == 1
        status, seen = await view(self.client, self.pk, self.session)
        assert status == 200
        assert seen["payment"]["status"] == "REQUIRES_ACTION" and seen["outcome"] is None
        assert seen["action"]["type"] == "redirect" and seen["action"]["provider"] == "atom"
        self.action_url = seen["action"]["url"]
        assert self.action_url.startswith(f"{self.sim.url}/atom/pay/AT")
        return seen

    async def choose(self, choice: str) -> str:
        """The customer presses Approve or Decline on Atom's page; where the browser goes."""
        async with self.http.get(self.action_url) as page:
            assert page.status == 200
            text = await page.text()
            assert "10,000 KRW" in text and "Approve" in text and "Decline" in text
        async with self.http.post(f"{self.action_url}/{choice}", allow_redirects=False) as resp:
            assert resp.status == 303
            return resp.headers["Location"]

    async def atom(self, path: str) -> Any:
        async with self.http.get(f"{self.sim.url}/atom/{path}") as resp:
            assert resp.status == 200
            return await resp.json()

    async def configure(self, **cfg: Any) -> None:
        async with self.http.post(f"{self.sim.url}/atom/admin/config", json=cfg) as resp:
            assert resp.status == 200, await resp.text()


async def _hosted(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    order_id: str = "ORD-ATOM-1",
    **changes: Any,
) -> Hosted:
    public = str(client.make_url("/")).rstrip("/")
    worker_settings = tuned(settings, atom_url=f"{sim.url}/atom", public_url=public, **changes)
    worker = Worker(worker_settings, repo, http, owner="w-atom")
    pk = await publishable(repo, settings)
    session = await create(client, orderId=order_id, successUrl=SUCCESS_URL, cancelUrl=CANCEL_URL)
    return Hosted(client, worker, pk, session, http, sim)


async def _row(pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row is not None
    return row


async def _webhooks(pool: asyncpg.Pool, tid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT d.event_status FROM webhook_deliveries d JOIN payment_processes p"
        " ON p.id = d.payment_id WHERE p.tid = $1",
        tid,
    )
    return [r["event_status"] for r in rows]


async def _transitions(pool: asyncpg.Pool, tid: str) -> list[tuple[str | None, str]]:
    rows = await pool.fetch(
        "SELECT e.from_status, e.to_status FROM payment_events e JOIN payment_processes p"
        " ON p.id = e.payment_id WHERE p.tid = $1 AND e.refund_id IS NULL ORDER BY e.id",
        tid,
    )
    return [(r["from_status"], r["to_status"]) for r in rows]


async def test_approved_on_atoms_page_settles_by_callback_and_returns_to_the_completion_page(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    with structlog.testing.capture_logs() as logs:
        await h.start()
        row = await _row(pool, h.tid)
        assert row["status"] == "REQUIRES_ACTION" and row["atom_token_id"].startswith("AT")
        assert row["action_expires_at"] is not None
        assert await h.atom("ledger") == {"charges": [], "count": 0, "refunds": []}
        assert await _webhooks(pool, h.tid) == []  # nothing final yet

        back = await h.choose("approve")
    assert back.startswith(str(client.make_url(f"/app/return/test/{h.tid}")))
    events = {e["event"]: e for e in logs}
    assert events["Payment initiated"]["orderId"] == "ORD-ATOM-1"
    assert events["Payment initiated"]["amount"] == 10000
    assert events["Token received"]["atomTokenId"] == row["atom_token_id"]
    assert events["Callback received"]["status"] == "SUCCESS"

    row = await _row(pool, h.tid)
    assert row["status"] == "SUCCESS" and row["last_actor"] == "provider:atom"
    assert row["atom_txn_id"] and row["approval_no"] == row["atom_txn_id"]
    assert row["payment_method"] == "card"
    assert events["Callback received"]["atomTxnId"] == row["atom_txn_id"]
    assert (await h.atom("ledger"))["count"] == 1
    assert await _webhooks(pool, h.tid) == ["SUCCESS"]
    assert await _transitions(pool, h.tid) == [
        (None, "PENDING"),
        ("PENDING", "PROCESSING"),
        ("PROCESSING", "REQUIRES_ACTION"),
        ("REQUIRES_ACTION", "SUCCESS"),
    ]
    _, seen = await view(client, h.pk, h.session)
    assert seen["outcome"] == {"result": "success", "code": None} and seen["action"] is None
    # The overview's rollup counts it, though it came from REQUIRES_ACTION (migration 0018).
    await pool.execute("SELECT fold_payment_rollup()")
    assert (
        await pool.fetchval(
            "SELECT sum(n) FROM payment_rollup WHERE outcome = 'SUCCESS' AND amount = 10000"
        )
        == 1
    )

    async with http.get(back) as page:
        assert page.status == 200
        text = await page.text()
    assert "Paid" in text and "Test merchant" in text and h.tid in text
    assert f'href="{SUCCESS_URL}"' in text


async def test_the_merchants_back_office_shows_atoms_ids(
    aiohttp_client: Any,
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    await h.start()
    await h.choose("approve")
    row = await _row(pool, h.tid)
    await make_user(pool, "admin@shop.example", "admin", MID)
    web = await aiohttp_client(create_app(fast(settings)))
    csrf = await log_in(web, "admin@shop.example")
    moved = await web.post(
        "/backoffice/mode", data={"mode": "test", "csrf": csrf}, allow_redirects=False
    )
    assert moved.status == 303
    page = await (await web.get(f"/backoffice/payments/{h.tid}")).text()
    assert row["atom_token_id"] in page and row["atom_txn_id"] in page and ">card<" in page


async def test_declined_on_atoms_page_fails_uncharged(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    await h.start()
    back = await h.choose("decline")
    row = await _row(pool, h.tid)
    assert row["status"] == "FAILED" and row["fail_reason"] == "DECLINED_BY_CUSTOMER"
    assert (await h.atom("ledger"))["count"] == 0
    assert await _webhooks(pool, h.tid) == ["FAILED"]
    _, seen = await view(client, h.pk, h.session)
    assert seen["outcome"] == {"result": "failure", "code": "declined_by_customer"}
    async with http.get(back) as page:
        text = await page.text()
    assert page.status == 200 and "Payment failed" in text and f'href="{CANCEL_URL}"' in text


async def test_walking_away_expires_the_payment_uncharged_after_asking_atom(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(
        client,
        settings,
        repo,
        http,
        sim,
        atom_action_expiry_seconds=0.3,
        atom_action_inquiry_seconds=0.1,
    )
    await h.start()
    status_calls = (await h.atom("stats"))["statusCalls"]

    async def expired() -> bool:
        await h.worker.actions_pass()
        return (await _row(pool, h.tid))["status"] != "REQUIRES_ACTION"

    await wait_until(expired, what="the abandoned token to expire")
    row = await _row(pool, h.tid)
    assert row["status"] == "FAILED" and row["fail_reason"] == "ACTION_EXPIRED"
    # Atom was asked before we gave up, and it charged nothing.
    assert (await h.atom("stats"))["statusCalls"] > status_calls
    assert (await h.atom("ledger"))["count"] == 0
    assert await _webhooks(pool, h.tid) == ["FAILED"]
    _, seen = await view(client, h.pk, h.session)
    assert seen["outcome"] == {"result": "failure", "code": "action_expired"}


async def test_a_callback_sent_twice_settles_once(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    await h.configure(callback="twice")
    await h.start()
    await h.choose("approve")
    sent = (await h.atom("callbacks-sent"))["callbacks"]
    assert [c["status"] for c in sent] == [200, 200]
    assert (await _row(pool, h.tid))["status"] == "SUCCESS"
    assert await _webhooks(pool, h.tid) == ["SUCCESS"]
    assert [t for t in await _transitions(pool, h.tid) if t[1] == "SUCCESS"] == [
        ("REQUIRES_ACTION", "SUCCESS")
    ]


async def test_a_badly_signed_callback_is_refused_and_the_inquiry_settles_it(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim, atom_action_inquiry_seconds=0.05)
    await h.configure(callback="bad_signature")
    await h.start()
    labels = {"provider": "atom"}
    before = REGISTRY.get_sample_value("engine_signature_failures_total", labels) or 0.0
    with structlog.testing.capture_logs() as logs:
        await h.choose("approve")
    assert [c["status"] for c in (await h.atom("callbacks-sent"))["callbacks"]] == [401]
    assert REGISTRY.get_sample_value("engine_signature_failures_total", labels) == before + 1
    failed = [e for e in logs if e["event"] == "Signature verification failed"]
    assert [e["orderId"] for e in failed] == [h.tid]
    row = await _row(pool, h.tid)
    assert row["status"] == "REQUIRES_ACTION" and row["atom_txn_id"] is None
    assert await _webhooks(pool, h.tid) == []

    async def settled() -> bool:
        await h.worker.actions_pass()
        return (await _row(pool, h.tid))["status"] == "SUCCESS"

    await wait_until(settled, what="the inquiry to find Atom's approval")
    row = await _row(pool, h.tid)
    assert row["atom_txn_id"] and row["last_actor"] == "w-atom"
    assert await _webhooks(pool, h.tid) == ["SUCCESS"]


async def test_no_callback_at_all_is_settled_by_the_inquiry(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim, atom_action_inquiry_seconds=0.05)
    await h.configure(callback="never")
    await h.start()
    back = await h.choose("decline")
    assert (await h.atom("callbacks-sent"))["callbacks"] == []
    async with http.get(back) as page:  # back before anyone told us: still waiting
        assert "Processing the payment" in await page.text()

    async def settled() -> bool:
        await h.worker.actions_pass()
        return (await _row(pool, h.tid))["status"] == "FAILED"

    await wait_until(settled, what="the inquiry to find Atom's decline")
    row = await _row(pool, h.tid)
    assert row["fail_reason"] == "DECLINED_BY_CUSTOMER"
    assert await _webhooks(pool, h.tid) == ["FAILED"]


async def test_a_late_callback_for_an_expired_payment_is_recorded_and_flagged(
    aiohttp_client: Any,
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(
        client,
        settings,
        repo,
        http,
        sim,
        atom_action_expiry_seconds=0.2,
        atom_action_inquiry_seconds=0.05,
    )
    await h.configure(callback="late", callback_delay_seconds=3600.0)
    await h.start()
    await h.choose("approve")  # Atom takes the money only later

    async def expired() -> bool:
        await h.worker.actions_pass()
        return (await _row(pool, h.tid))["status"] == "FAILED"

    await wait_until(expired, what="the payment to expire")
    async with http.post(f"{sim.url}/atom/admin/send-late") as resp:
        assert (await resp.json())["sent"] == 1
    assert [c["status"] for c in (await h.atom("callbacks-sent"))["callbacks"]] == [200]
    row = await _row(pool, h.tid)
    # Not applied: still expired, with its one FAILED webhook...
    assert row["status"] == "FAILED" and row["fail_reason"] == "ACTION_EXPIRED"
    assert await _webhooks(pool, h.tid) == ["FAILED"]
    # ...and not dropped: recorded for a person, who sees Atom took the money.
    late = await repo.payments.late_callbacks()
    assert [(x.tid, x.callback_status, x.payment_status) for x in late] == [
        (h.tid, "SUCCESS", "FAILED")
    ]
    assert late[0].callback_atom_txn_id
    assert (await h.atom("ledger"))["count"] == 1
    # An operator sees it in the recovery console.
    await make_user(pool, "op@hamster.example", "operator", None)
    web = await aiohttp_client(create_app(fast(settings)))
    await log_in(web, "op@hamster.example")
    page = await (await web.get("/backoffice/console/recovery")).text()
    table = page[page.index('id="late-callbacks"') :]
    assert f'data-tid="{h.tid}"' in table and late[0].callback_atom_txn_id in table


async def test_a_payment_made_on_atoms_page_can_be_refunded(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    await h.start()
    await h.choose("approve")
    assert (await _row(pool, h.tid))["status"] == "SUCCESS"
    resp = await client.post(
        f"/api/payments/{h.tid}/refunds", json={"amount": 4000}, headers={"Idempotency-Key": "r1"}
    )
    assert resp.status == 202, await resp.text()
    assert (await h.worker.refunds_pass()).settled == 1
    row = await _row(pool, h.tid)
    assert row["status"] == "PARTIALLY_REFUNDED" and row["refunded_amount"] == 4000
    refunds = (await h.atom("refunds"))["refunds"]
    assert [(r["merchTxnId"], r["amount"]) for r in refunds] == [(h.tid, 4000)]


async def test_the_return_page_shows_only_the_payment_its_signed_url_names(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    await h.start()
    back = await h.choose("approve")
    path, _, query = back.partition("?")
    sig = query.removeprefix("sig=")
    good = path.removeprefix(str(client.make_url("/")).rstrip("/"))
    assert (await client.get(f"{good}?sig={sig}")).status == 200
    other = await client.post(
        "/api/payment",
        json={"userPublicId": "U", "orderId": "ORD-PLAIN", "amount": 500, "provider": "atom"},
    )
    plain_tid = (await other.json())["transactionId"]
    plain = returns.return_url("http://x", settings.api_key_secret, "test", plain_tid)
    hostile = [
        f"{good}",  # no sig
        f"{good}?sig={sig[:-2]}AA",  # altered sig
        f"{good.replace('/test/', '/live/')}?sig={sig}",  # the other mode
        f"{good[:-1]}{(int(good[-1]) + 1) % 10}?sig={sig}",  # a neighbouring tid
        plain.removeprefix("http://x"),  # validly signed, but no checkout session made it
        "/app/return/test/%3Cscript%3Ealert(1)%3C%2Fscript%3E?sig=" + sig,
        f"/app/return/prod/{h.tid}?sig={sig}",
        f"{good}?sig={'A' * 5000}",
    ]
    for url in hostile:
        resp = await client.get(url)
        assert resp.status == 404, url
        assert resp.headers["Content-Type"].startswith("application/problem+json"), url
        # One answer, whatever was wrong; JSON, so a hostile path is inert text in it.
        body = await resp.json()
        assert body["detail"] == "No such payment." and body["field"] == "tid", url
        assert "Test merchant" not in await resp.text(), url


async def test_paying_at_atom_is_refused_with_a_clear_answer_when_it_cannot_be(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    api_key: str,
) -> None:
    h = await _hosted(client, settings, repo, http, sim)
    url = PUBLIC.format(h.session["id"]) + "/pay"
    secret = {"clientSecret": h.session["clientSecret"]}
    as_pk = {"Authorization": f"Bearer {h.pk}"}
    cases: list[tuple[dict[str, str], dict[str, str], Any, int, str | None]] = [
        ({"clientSecret": "cs_x_secret_y"}, as_pk, {"method": "atom"}, 404, "not_found"),
        (secret, {"Authorization": f"Bearer {api_key}"}, {"method": "atom"}, 403, None),
        (secret, as_pk, {"method": "card"}, 422, None),
        (secret, as_pk, {"method": "atom", "amount": 1}, 422, None),
        (secret, as_pk, {"method": "<img src=x>"}, 422, None),
    ]
    for params, headers, body, status, code in cases:
        resp = await client.post(url, params=params, json=body, headers=headers)
        assert resp.status == status, (body, await resp.text())
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        if code:
            assert (await resp.json())["code"] == code
    other_merchant = await client.post(
        PUBLIC.format("cs_" + "A" * 22) + "/pay",
        params=secret,
        json={"method": "atom"},
        headers=as_pk,
    )
    assert other_merchant.status == 404
    await h.start()
    again = await client.post(url, params=secret, json={"method": "atom"}, headers=as_pk)
    assert again.status == 409 and (await again.json())["code"] == "already_confirmed"


async def test_a_callback_racing_two_inquiring_workers_settles_once(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(client, settings, repo, http, sim, atom_action_inquiry_seconds=0.01)
    await h.configure(callback="never")
    await h.start()
    await h.choose("approve")
    callback = await h.atom(f"callbacks/{h.tid}")
    other = Worker(h.worker.settings, repo, http, owner="w-other")
    await pool.execute("UPDATE payment_processes SET next_attempt_at = now() WHERE tid = $1", h.tid)

    async def post_callback() -> int:
        resp = await client.post(
            "/api/providers/atom/callback", json=callback, headers={"Authorization": ""}
        )
        return resp.status

    results = await asyncio.gather(
        post_callback(), h.worker.actions_pass(), other.actions_pass(), post_callback()
    )
    assert results[0] == results[3] == 200
    assert sum(r.settled for r in results[1:3]) <= 1
    assert (await _row(pool, h.tid))["status"] == "SUCCESS"
    assert await _webhooks(pool, h.tid) == ["SUCCESS"]
    assert [t for t in await _transitions(pool, h.tid) if t[1] == "SUCCESS"] == [
        ("REQUIRES_ACTION", "SUCCESS")
    ]


async def test_the_last_inquiry_comes_at_the_expiry_not_a_whole_interval_later(
    client: Client,
    settings: Settings,
    repo: Repository,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    h = await _hosted(
        client,
        settings,
        repo,
        http,
        sim,
        atom_action_expiry_seconds=120.0,
        atom_action_inquiry_seconds=3600.0,
    )
    await h.start()
    row = await _row(pool, h.tid)
    # The first inquiry: at the expiry, which is sooner than the interval.
    assert row["next_attempt_at"] == row["action_expires_at"]
    # An inquiry made early (a person asked for it) is followed by one at the expiry again.
    await pool.execute("UPDATE payment_processes SET next_attempt_at = now() WHERE tid = $1", h.tid)
    assert (await h.worker.actions_pass()).inquired == 1
    row = await _row(pool, h.tid)
    assert row["status"] == "REQUIRES_ACTION"
    assert row["next_attempt_at"] == row["action_expires_at"]
    # Past the expiry, with Atom unreachable, it is neither expired nor asked in a loop.
    await pool.execute(
        "UPDATE payment_processes SET next_attempt_at = now(), action_expires_at = now()"
        " WHERE tid = $1",
        h.tid,
    )
    await h.configure(error_rate=1.0)
    with structlog.testing.capture_logs() as logs:
        assert (await h.worker.actions_pass()).expired == 0
    failed = [e for e in logs if e["event"] == "API call failed"]
    assert [e["orderId"] for e in failed] == ["ORD-ATOM-1"] and "retryCount" in failed[0]
    row = await _row(pool, h.tid)
    assert row["status"] == "REQUIRES_ACTION"
    assert (row["next_attempt_at"] - row["action_expires_at"]).total_seconds() > 3000
    assert (await h.worker.actions_pass()).inquired == 0
