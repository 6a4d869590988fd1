"""engine/recovery on a real database: recovery actions, merchants, search, the audit log."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

from api.app import create_app
from config.settings import Settings
from engine import errors, recovery
from engine.models import Status
from engine.store.recovery import RecoveryStore
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import MID
from tests.integration.engine_support import acquirer_config, tuned
from tests.integration.reports_support import Data, fill

OTHER = "other_mid_002"


@pytest.fixture
def store(pool: asyncpg.Pool) -> RecoveryStore:
    """The recovery store on this test's database."""
    return RecoveryStore(pool)


async def _stuck(
    d: Data,
    pool: asyncpg.Pool,
    mid: str,
    order: str,
    *,
    mode: str = "test",
    parked: bool = False,
    reason: str = "OUTCOME_UNKNOWN",
    unknown: bool = True,
    provider: str = "card",
) -> str:
    """An UNRESOLVED payment: parked (waiting for a person) or still inquired later."""
    tid = await d.payment(mid, order, minute=50, mode=mode, status="UNRESOLVED", parked=parked)
    await pool.execute(
        "UPDATE payment_processes SET unresolved_reason = $2, provider = $4,"
        " outcome_unknown_since = CASE WHEN $3 THEN now() END,"
        " next_attempt_at = CASE WHEN $5 THEN 'infinity'::timestamptz"
        "                        ELSE now() + interval '1 hour' END"
        " WHERE tid = $1",
        tid,
        reason,
        unknown,
        provider,
        parked,
    )
    return tid


async def _row(pool: asyncpg.Pool, tid: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row is not None
    return row


async def _audit(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM operator_audit ORDER BY id"))


async def test_the_lists_show_unresolved_and_parked_payments_of_every_merchant(
    store: RecoveryStore, pool: asyncpg.Pool
) -> None:
    d = await fill(pool, MID, OTHER)
    slow = await _stuck(d, pool, MID, "U-1")
    refused = await _stuck(
        d, pool, OTHER, "U-2", parked=True, reason="PROVIDER_HTTP_401", unknown=False
    )
    live = await _stuck(d, pool, MID, "U-3", mode="live", parked=True, reason="PROVIDER_REJECTED")
    listed = await recovery.unresolved(store)
    by_tid = {s.tid: s for s in listed}
    assert {slow, refused, live} <= set(by_tid)
    assert [s.id for s in listed] == sorted(s.id for s in listed)
    assert by_tid[refused].parked and by_tid[refused].credentials_refused
    assert not by_tid[slow].parked and not by_tid[live].credentials_refused
    parked = await recovery.unresolved(store, parked=True)
    assert {s.tid for s in parked} == {refused, live}
    assert [s.tid for s in await recovery.unresolved(store, parked=True, mode="live")] == [live]
    # Keyset pages: no duplicates, no gaps.
    first = await recovery.unresolved(store, limit=1)
    rest = await recovery.unresolved(store, after_id=first[0].id, limit=100)
    assert [s.tid for s in first + rest] == [s.tid for s in listed]


async def test_release_after_credentials_are_fixed_lets_the_worker_settle_them(
    store: RecoveryStore,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    d = Data(pool)
    refused = await _stuck(
        d, pool, MID, "R-1", parked=True, reason="PROVIDER_HTTP_401", unknown=False
    )
    other_mode = await _stuck(d, pool, MID, "R-2", mode="live", parked=True, unknown=False)
    maybe = await _stuck(d, pool, MID, "R-3", parked=True, reason="PROVIDER_HTTP_403")
    with pytest.raises(errors.InvalidField):
        await recovery.release_parked(store, "ana")
    released = await recovery.release_parked(
        store, "ana", provider="card", mode="test", reason="rotated the acquirer key"
    )
    assert sorted(released) == sorted([refused, maybe])
    assert (await _row(pool, refused))["status"] == "PENDING"
    # It may have charged: it stays UNRESOLVED, due now, and is inquired first.
    assert (await _row(pool, maybe))["status"] == "UNRESOLVED"
    assert await pool.fetchval(
        "SELECT next_attempt_at = 'infinity' FROM payment_processes WHERE tid = $1", other_mode
    )
    [audit] = await _audit(pool)
    assert (audit["actor"], audit["action"], audit["target"]) == (
        "operator:ana",
        "payments.release_parked",
        "parked:test:card",
    )
    assert audit["detail"]["count"] == 2 and audit["reason"] == "rotated the acquirer key"
    assert (await Worker(settings, repo, http, owner="w").payments_pass()).settled == 2
    assert (await _row(pool, refused))["status"] == "SUCCESS"
    events = await pool.fetch(
        "SELECT e.from_status, e.to_status, e.actor FROM payment_events e"
        " JOIN payment_processes p ON p.id = e.payment_id WHERE p.tid = $1 ORDER BY e.id",
        refused,
    )
    assert ("UNRESOLVED", "PENDING", "operator:ana") in [tuple(e) for e in events]


async def test_inquire_now_makes_it_due_and_the_next_pass_asks_the_provider(
    store: RecoveryStore,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    d = Data(pool)
    tid = await _stuck(d, pool, MID, "I-1")
    worker = Worker(settings, repo, http, owner="w")
    assert (await worker.payments_pass()).claimed == 0  # due in an hour
    assert await recovery.inquire_now(store, tid, "bo", "merchant called") == "UNRESOLVED"
    assert (await worker.payments_pass()).settled == 1
    assert (await _row(pool, tid))["status"] in ("SUCCESS", "FAILED")
    [audit] = await _audit(pool)
    assert (audit["action"], audit["target"], audit["reason"]) == (
        "payment.inquire_now",
        f"payment:{tid}",
        "merchant called",
    )
    with pytest.raises(errors.OperatorActionRefused):
        await recovery.inquire_now(store, tid, "bo")
    with pytest.raises(errors.PaymentNotFound):
        await recovery.inquire_now(store, "NOPE_1", "bo")
    assert len(await _audit(pool)) == 1


async def test_resolve_settles_with_its_webhook_and_audit_row(
    store: RecoveryStore, pool: asyncpg.Pool
) -> None:
    d = Data(pool)
    tid = await _stuck(d, pool, MID, "S-1")
    with pytest.raises(errors.InvalidField) as caught:
        await recovery.resolve(store, tid, Status.SUCCESS, "  ", "eve")
    assert caught.value.field == "reason"
    with pytest.raises(errors.InvalidField) as caught:
        await recovery.resolve(store, tid, "REFUNDED", "why", "eve")
    assert caught.value.field == "status"
    assert not await _audit(pool)

    got = await recovery.resolve(
        store, tid, Status.SUCCESS, "acquirer portal shows it approved", "eve", approval_no="A77"
    )
    assert got is Status.SUCCESS
    row = await _row(pool, tid)
    assert (row["status"], row["approval_no"], row["last_actor"]) == (
        "SUCCESS",
        "A77",
        "operator:eve",
    )
    [delivery] = await pool.fetch(
        "SELECT event_status, event_id FROM webhook_deliveries WHERE payment_id = $1", row["id"]
    )
    assert delivery["event_status"] == "SUCCESS"
    assert delivery["event_id"] == f"evt_{row['public_id']}_success"
    [audit] = await _audit(pool)
    assert (audit["actor"], audit["action"], audit["reason"]) == (
        "operator:eve",
        "payment.resolve",
        "acquirer portal shows it approved",
    )
    assert audit["detail"]["unresolvedReason"] == "OUTCOME_UNKNOWN"
    # Counted in the overview's rollup like any outcome.
    await pool.execute("SELECT fold_payment_rollup()")
    assert (
        await pool.fetchval(
            "SELECT n FROM payment_rollup WHERE mid = $1 AND outcome = 'SUCCESS'", MID
        )
        == 1
    )


async def test_two_resolves_race_one_wins_and_the_loser_changes_nothing(
    store: RecoveryStore, pool: asyncpg.Pool
) -> None:
    d = Data(pool)
    for n in range(5):
        tid = await _stuck(d, pool, MID, f"RACE-{n}")
        results = await asyncio.gather(
            recovery.resolve(store, tid, Status.SUCCESS, "portal says ok", "a"),
            recovery.resolve(store, tid, Status.FAILED, "portal says no", "b", fail_reason="X"),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, Status)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], errors.OperatorActionRefused)
        row = await _row(pool, tid)
        assert row["status"] == won[0].value
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE payment_id = $1", row["id"]
            )
            == 1
        )
        audits = await pool.fetch(
            "SELECT detail FROM operator_audit WHERE target = $1", f"payment:{tid}"
        )
        assert [a["detail"]["status"] for a in audits] == [won[0].value]


async def test_a_payment_a_worker_holds_or_a_final_one_is_not_resolved(
    store: RecoveryStore, pool: asyncpg.Pool
) -> None:
    d = Data(pool)
    held = await d.payment(MID, "H-1", minute=1, status="PROCESSING")
    done = await d.payment(MID, "H-2", minute=1, status="FAILED")
    plain = await d.payment(MID, "H-3", minute=1, status="PENDING")  # nothing unknown about it
    for tid, status in ((held, "PROCESSING"), (done, "FAILED"), (plain, "PENDING")):
        with pytest.raises(errors.OperatorActionRefused) as caught:
            await recovery.resolve(store, tid, Status.SUCCESS, "sure", "eve")
        assert status in caught.value.detail
        assert (await _row(pool, tid))["status"] == status
    assert not await _audit(pool)
    assert not await pool.fetchval("SELECT count(*) FROM webhook_deliveries")


async def test_search_finds_payments_across_merchants(
    store: RecoveryStore, pool: asyncpg.Pool
) -> None:
    d = await fill(pool, MID, OTHER)
    by_order = await recovery.search_payments(store, "ORD-1001")
    assert {(f.mid, f.mode) for f in by_order} == {(MID, "test"), (MID, "live"), (OTHER, "test")}
    tid = by_order[0].tid
    assert [f.tid for f in await recovery.search_payments(store, tid)] == [tid]
    mine = await recovery.search_payments(store, OTHER, limit=10)
    assert {f.mid for f in mine} == {OTHER} and len(mine) == 2
    times = [f.requested_at for f in await recovery.search_payments(store, MID)]
    assert times == sorted(times, reverse=True) and len(times) == len(
        [r for k, v in d.rows.items() if k[0] == MID for r in v if r.kind != "refund"]
    )
    with pytest.raises(errors.InvalidField):
        await recovery.search_payments(store, "x" * 201)


async def test_a_suspended_merchants_keys_get_401_through_the_api(
    aiohttp_client,  # type: ignore[no-untyped-def]
    store: RecoveryStore,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    created = await recovery.create_merchant(
        store, repo, settings.api_key_secret, "shop_9", "Shop Nine", "ops", reason="signed up"
    )
    assert created["apiKey"].startswith("sk_test_")
    with pytest.raises(errors.InvalidField) as caught:
        await recovery.create_merchant(store, repo, settings.api_key_secret, "shop_9", "X", "ops")
    assert caught.value.field == "mid"
    with pytest.raises(errors.InvalidField):
        await recovery.create_merchant(store, repo, settings.api_key_secret, "bad mid!", "X", "ops")
    client = await aiohttp_client(
        create_app(tuned(settings, auth_cache_seconds=0)),
        headers={"Authorization": f"Bearer {created['apiKey']}"},
    )
    assert (await client.get("/api/payments")).status == 200
    with pytest.raises(errors.InvalidField):
        await recovery.suspend(store, "shop_9", "ops", "")
    row = await recovery.suspend(store, "shop_9", "ops", "chargeback fraud")
    assert row.suspended and row.active_keys == 1
    resp = await client.get("/api/payments")
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    with pytest.raises(errors.OperatorActionRefused):
        await recovery.suspend(store, "shop_9", "ops", "again")
    with pytest.raises(errors.MerchantNotFound):
        await recovery.suspend(store, "nobody", "ops", "why")
    listed = {m.mid: m for m in await recovery.list_merchants(store)}
    assert listed["shop_9"].suspended
    assert [m.mid for m in await recovery.list_merchants(store, search="shop")] == ["shop_9"]
    await recovery.suspend(store, "shop_9", "ops", "", suspended=False)
    assert (await client.get("/api/payments")).status == 200
    actions = [(a["action"], a["target"]) for a in await _audit(pool)]
    assert actions == [
        ("merchant.create", "merchant:shop_9"),
        ("merchant.issue_key", "merchant:shop_9"),
        ("merchant.suspend", "merchant:shop_9"),
        ("merchant.unsuspend", "merchant:shop_9"),
    ]


async def test_the_audit_log_is_append_only_and_pages_newest_first(
    store: RecoveryStore, pool: asyncpg.Pool
) -> None:
    for n in range(7):
        await store.record(f"operator:o{n}", "test.action", f"thing:{n % 2}", None, {"n": n})
    for statement in (
        "UPDATE operator_audit SET reason = 'changed'",
        "DELETE FROM operator_audit",
        "TRUNCATE operator_audit",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(statement)
    seen: list[int] = []
    cursor = None
    while True:
        page = await recovery.audit_log(store, cursor, 3)
        seen += [e.id for e in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7
    only = await recovery.audit_log(store, target="thing:1")
    assert [e.detail["n"] for e in only.rows] == [5, 3, 1]
    with pytest.raises(errors.InvalidField):
        await recovery.audit_log(store, "1; DROP", 3)
