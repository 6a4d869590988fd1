"""The payment engine on a real PostgreSQL and simulator: claims, compare-and-set settles,
the outbox, an unreachable acquirer, the reaper, and two workers draining one queue."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import asyncpg
import pytest

from config.settings import Settings
from engine.errors import StateConflict
from engine.models import Claimed, Outcome, Status
from engine.payments import claim
from engine.providers.acquirer import AcquirerClient
from engine.providers.protocol import ProviderUnavailable
from engine.store import db
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.integration.engine_support import (
    FINAL,
    MID,
    acquirer_config,
    acquirer_stats,
    by_hand,
    count_unsettled,
    insert_payments,
    ledger,
    statuses,
    tuned,
)
from tests.waiting import wait_until


def _acquirer(http: aiohttp.ClientSession, sim: SimulatorHandle) -> AcquirerClient:
    return AcquirerClient(http, f"{sim.url}/acquirer", 5.0, 1)


async def _delivery_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM webhook_deliveries"))


# --- 1. compare-and-set -------------------------------------------------------------------


async def test_settle_by_a_worker_without_the_lease_changes_nothing(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    [tid] = await insert_payments(pool, sim, 1)
    [held] = await repo.payments.claim_pending("owner-a", 10, 30)
    assert held.tid == tid and held.attempts == 1

    intruder = [Outcome(held.id, Status.SUCCESS, approval_no="AP1")]
    assert await repo.payments.settle("owner-b", intruder) == []
    assert await repo.payments.release("owner-b", [held.id], 0) == []
    row = await repo.payments.payment_by_tid(tid, MID, "test")
    assert row is not None
    assert row.status is Status.PROCESSING and row.lease_owner == "owner-a"
    assert row.approval_no is None and row.processed_at is None
    assert await _delivery_count(pool) == 0

    # The holder can, once; a repeat of the write (or a change of mind) is a no-op.
    [settled] = await repo.payments.settle(
        "owner-a", [Outcome(held.id, Status.SUCCESS, approval_no="AP2")]
    )
    assert settled.tid == tid and settled.status is Status.SUCCESS
    again = [Outcome(held.id, Status.FAILED, fail_reason="LIMIT_EXCEEDED")]
    assert await repo.payments.settle("owner-a", again) == []
    row = await repo.payments.payment_by_tid(tid, MID, "test")
    assert row is not None
    assert row.status is Status.SUCCESS and row.approval_no == "AP2" and row.lease_owner is None
    assert await _delivery_count(pool) == 1


async def test_a_processing_payment_is_not_settled_by_hand_and_the_worker_settles_it(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0, latency_ms=500)
    [tid] = await insert_payments(pool, sim, 1)
    slow = Worker(settings, repo, http, owner="slow-worker")
    run = asyncio.create_task(slow.payments_pass())

    async def acquirer_asked() -> bool:
        return (await acquirer_stats(http, sim))["authorizeCalls"] == 1

    await wait_until(acquirer_asked, what="the worker is waiting on the acquirer")
    assert (await statuses(pool))[tid] == "PROCESSING"
    # The acquirer may be charging right now: a hand-written outcome could contradict it.
    with pytest.raises(StateConflict) as refused:
        await by_hand(repo, tid, Status.FAILED)
    assert refused.value.current == "PROCESSING"
    assert (await statuses(pool))[tid] == "PROCESSING"

    result = await asyncio.wait_for(run, 5)
    assert (result.claimed, result.settled) == (1, 1)
    row = await repo.payments.payment_by_tid(tid, MID, "test")
    assert row is not None
    assert row.status is Status.SUCCESS and row.fail_reason is None
    assert row.approval_no is not None and row.lease_owner is None
    [delivery] = await repo.deliveries.deliveries_of(row.id)
    assert delivery.event_status == "SUCCESS"


async def test_claim_takes_only_pending_rows(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    tids = await insert_payments(pool, sim, 8)
    await pool.execute(
        "UPDATE payment_processes SET status = 'PROCESSING', lease_owner = 'other', "
        "lease_expires_at = now() + interval '1 minute' WHERE tid = $1",
        tids[0],
    )
    # An expired lease is the reaper's business, not a claim's.
    await pool.execute(
        "UPDATE payment_processes SET status = 'PROCESSING', lease_owner = 'gone', "
        "lease_expires_at = now() - interval '1 minute' WHERE tid = $1",
        tids[1],
    )
    await pool.execute(
        "UPDATE payment_processes SET status = 'SUCCESS', approval_no = 'AP1' WHERE tid = $1",
        tids[2],
    )
    await pool.execute(
        "UPDATE payment_processes SET status = 'FAILED', fail_reason = 'X' WHERE tid = $1",
        tids[3],
    )

    claimed = await repo.payments.claim_pending("me", 100, 30)
    assert sorted(c.tid for c in claimed) == tids[4:]
    assert await repo.payments.claim_pending("me", 100, 30) == []
    after = await pool.fetch("SELECT tid, status, lease_owner, attempts FROM payment_processes")
    untouched = {r["tid"]: (r["status"], r["lease_owner"], r["attempts"]) for r in after}
    assert untouched[tids[0]] == ("PROCESSING", "other", 0)
    assert untouched[tids[1]] == ("PROCESSING", "gone", 0)
    assert untouched[tids[2]] == ("SUCCESS", None, 0)
    assert untouched[tids[3]] == ("FAILED", None, 0)


async def test_concurrent_claims_never_share_a_row(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    tids = await insert_payments(pool, sim, 200)
    batches = await asyncio.gather(
        *(repo.payments.claim_pending(f"w{i}", 30, 30) for i in range(8))
    )
    batches.append(await repo.payments.claim_pending("sweeper", 1000, 30))
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 200
    assert sorted(c.tid for batch in batches for c in batch) == tids
    owners = await pool.fetch("SELECT id, lease_owner FROM payment_processes")
    by_id = {r["id"]: r["lease_owner"] for r in owners}
    owner_names = [f"w{i}" for i in range(8)] + ["sweeper"]
    for owner, batch in zip(owner_names, batches, strict=True):
        assert all(by_id[c.id] == owner for c in batch)
    assert all(len(batch) <= 30 for batch in batches), [len(b) for b in batches]


async def test_row_not_due_yet_is_not_claimed(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    [later] = await insert_payments(pool, sim, 1, due_in_seconds=3600)
    [now] = await insert_payments(pool, sim, 1, first=1)
    assert [c.tid for c in await repo.payments.claim_pending("me", 10, 30)] == [now]
    assert await repo.payments.claim_pending("me", 10, 30) == []
    assert (await statuses(pool))[later] == "PENDING"
    await pool.execute(
        "UPDATE payment_processes SET next_attempt_at = now() - interval '1 second' WHERE tid = $1",
        later,
    )
    assert [c.tid for c in await repo.payments.claim_pending("me", 10, 30)] == [later]


@pytest.mark.parametrize("pending", [2, 4, 40])
async def test_claim_returns_at_most_limit_rows(
    pending: int, pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    await insert_payments(pool, sim, pending)
    claimed = await repo.payments.claim_pending("me", 1, 30)
    assert len(claimed) == 1, [c.tid for c in claimed]
    processing = await pool.fetchval(
        "SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING'"
    )
    assert processing == 1


async def test_reap_reports_the_owner_whose_lease_expired(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    [tid] = await insert_payments(pool, sim, 1)
    await repo.payments.claim_pending("dead-worker", 10, 30)
    await pool.execute("UPDATE payment_processes SET lease_expires_at = now() - interval '1 s'")
    assert await repo.payments.reap_payments(10) == [(tid, "dead-worker")]


async def test_reap_returns_at_most_limit_rows(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    await insert_payments(pool, sim, 4)
    await repo.payments.claim_pending("dead-worker", 10, 30)
    await pool.execute("UPDATE payment_processes SET lease_expires_at = now() - interval '1 s'")
    assert len(await repo.payments.reap_payments(1)) == 1
    pending = await pool.fetchval("SELECT count(*) FROM payment_processes WHERE status = 'PENDING'")
    assert pending == 1


@pytest.mark.parametrize("query", ["claim_pending", "reap_payments", "claim_deliveries"])
async def test_limit_holds_whatever_join_the_planner_picks(
    query: str, pool: asyncpg.Pool, repo: Repository, database_url: str, sim: SimulatorHandle
) -> None:
    """A claim's LIMIT must bound the statement, not one scan of a subquery the planner may
    run again for every outer row (a nested loop without a Materialize node)."""
    tids = await insert_payments(pool, sim, 6)
    if query == "reap_payments":
        await repo.payments.claim_pending("dead-worker", 10, 30)
        await pool.execute("UPDATE payment_processes SET lease_expires_at = now() - interval '1 s'")
    if query == "claim_deliveries":
        for tid in tids:
            await by_hand(repo, tid, Status.SUCCESS)
    # Steer new sessions of this database to the plan that shows it: a nested loop that scans
    # the subquery again for every outer row (what the planner picked on its own for the
    # schema of migration 0001).
    for knob in ("material", "hashjoin", "mergejoin", "hashagg", "sort"):
        await pool.execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET enable_"
            + knob
            + " = off', current_database()); END $$"
        )
    nested = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        other = Repository(nested)
        if query == "claim_pending":
            taken = len(await other.payments.claim_pending("me", 1, 30))
        elif query == "reap_payments":
            taken = len(await other.payments.reap_payments(1))
        else:
            taken = len(await other.deliveries.claim_deliveries("me", 1, 30))
    finally:
        await nested.close()
    assert taken == 1


# --- 2. two workers, one queue ------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [10, 25])
async def test_two_workers_drain_500_payments_exactly_once(
    batch_size: int,
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await acquirer_config(http, sim, latency_ms=5)
    tids = await insert_payments(pool, sim, 500)
    tuned_settings = tuned(settings, batch_size=batch_size)
    workers = [Worker(tuned_settings, repo, http, owner=f"worker-{n}") for n in "ab"]

    largest_claim = 0

    async def drain(worker: Worker) -> int:
        nonlocal largest_claim
        settled = 0
        while True:
            result = await worker.payments_pass()
            largest_claim = max(largest_claim, result.claimed)
            settled += result.settled
            if result.claimed == 0:
                if await count_unsettled(pool) == 0:
                    return settled
                await asyncio.sleep(0.02)  # the other worker holds the rest

    per_worker = await asyncio.wait_for(asyncio.gather(*(drain(w) for w in workers)), 60)
    assert sum(per_worker) == 500
    assert all(n > 0 for n in per_worker), per_worker

    rows = await pool.fetch(
        "SELECT tid, status, approval_no, attempts, lease_owner FROM payment_processes"
    )
    assert sorted(r["tid"] for r in rows) == tids
    assert all(r["status"] in FINAL for r in rows)
    assert all(r["attempts"] == 1 and r["lease_owner"] is None for r in rows)
    approved = {r["tid"]: r["approval_no"] for r in rows if r["status"] == "SUCCESS"}
    charges = await ledger(http, sim)
    references = [c["reference"] for c in charges]
    assert len(references) == len(set(references))
    assert {c["reference"]: c["approvalNo"] for c in charges} == approved
    stats = await acquirer_stats(http, sim)
    assert stats["authorizeCalls"] == 500
    assert stats["approved"] + stats["declined"] == 500

    per_payment = await pool.fetch(
        "SELECT p.status, count(d.id) AS n, min(d.event_status) AS event FROM payment_processes p"
        " LEFT JOIN webhook_deliveries d ON d.payment_id = p.id GROUP BY p.id"
    )
    assert all(r["n"] == 1 and r["event"] == r["status"] for r in per_payment)
    # batch_size bounds a claim: no pass may take (and hold leases on) more than that.
    assert largest_claim <= batch_size


# --- 3. the outbox ------------------------------------------------------------------------


async def test_every_final_payment_has_exactly_one_outbox_row(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    tids = await insert_payments(pool, sim, 60)
    # Some are settled by hand first: those must not get a second row from the engine.
    assert await by_hand(repo, tids[0], Status.SUCCESS) == "settled"
    assert await by_hand(repo, tids[1], Status.FAILED) == "settled"
    worker = Worker(settings, repo, http, owner="outbox-worker")
    while (await worker.payments_pass()).claimed:
        pass
    assert await count_unsettled(pool) == 0

    counts = await pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM payment_processes WHERE status IN ('SUCCESS', 'FAILED'))
                   AS final,
               (SELECT count(DISTINCT payment_id) FROM webhook_deliveries) AS reported,
               (SELECT count(*) FROM webhook_deliveries) AS deliveries
        """
    )
    assert counts["final"] == counts["reported"] == counts["deliveries"] == 60
    mismatched = await pool.fetchval(
        """
        SELECT count(*) FROM webhook_deliveries d JOIN payment_processes p ON p.id = d.payment_id
        WHERE d.event_status <> p.status OR d.url <> p.webhook_url
           OR d.event_id <> 'evt_' || p.public_id || '_' || lower(p.status)
        """
    )
    assert mismatched == 0


async def test_settle_is_atomic_with_its_outbox_row(
    pool: asyncpg.Pool, repo: Repository, sim: SimulatorHandle
) -> None:
    await insert_payments(pool, sim, 3)
    claimed = await repo.payments.claim_pending("me", 10, 30)
    outcomes = [Outcome(c.id, Status.SUCCESS, approval_no=f"AP{c.id}") for c in claimed]
    await pool.execute(
        """
        CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'outbox unavailable'; END $$;
        CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_deliveries
            FOR EACH ROW EXECUTE FUNCTION refuse_outbox();
        """
    )
    with pytest.raises(asyncpg.RaiseError, match="outbox unavailable"):
        await repo.payments.settle("me", outcomes)
    rows = await pool.fetch("SELECT status, lease_owner, approval_no FROM payment_processes")
    assert [tuple(r) for r in rows] == [("PROCESSING", "me", None)] * 3

    await pool.execute("DROP TRIGGER refuse_outbox ON webhook_deliveries")
    assert len(await repo.payments.settle("me", outcomes)) == 3
    assert await _delivery_count(pool) == 3


# --- 4. acquirer unreachable --------------------------------------------------------------


async def test_unreachable_acquirer_requeues_the_payment_instead_of_failing_it(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    [tid] = await insert_payments(pool, sim, 1)
    cut_off = tuned(
        settings,
        acquirer_url="http://127.0.0.1:9/acquirer",
        acquirer_max_attempts=2,
        acquirer_timeout_seconds=1.0,
        acquirer_requeue_seconds=0.5,
    )
    result = await Worker(cut_off, repo, http, owner="cut-off").payments_pass()
    assert (result.claimed, result.settled) == (1, 0)

    row = await pool.fetchrow(
        "SELECT status, lease_owner, lease_expires_at, attempts, fail_reason, processed_at,"
        " next_attempt_at > now() AS later FROM payment_processes WHERE tid = $1",
        tid,
    )
    assert row["status"] == "PENDING" and row["fail_reason"] is None
    assert row["processed_at"] is None
    assert row["lease_owner"] is None and row["lease_expires_at"] is None
    assert row["attempts"] == 1 and row["later"] is True
    assert await _delivery_count(pool) == 0

    healthy = Worker(settings, repo, http, owner="healthy")

    async def settled_now() -> int:
        return (await healthy.payments_pass()).settled

    assert await wait_until(settled_now, what="the requeued payment settles") == 1
    payment = await repo.payments.payment_by_tid(tid, MID, "test")
    assert payment is not None
    assert payment.status is Status.SUCCESS and payment.attempts == 2
    [charge] = await ledger(http, sim)
    assert charge["reference"] == tid and charge["approvalNo"] == payment.approval_no
    assert len(await repo.deliveries.deliveries_of(payment.id)) == 1


# --- 5. the reaper ------------------------------------------------------------------------


async def test_reaper_requeues_a_dead_workers_rows_and_nothing_is_charged_twice(
    pool: asyncpg.Pool,
    repo: Repository,
    settings: Settings,
    sim: SimulatorHandle,
    http: aiohttp.ClientSession,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    tids = await insert_payments(pool, sim, 1)
    [alive] = await repo.payments.claim_pending("alive-worker", 10, 60)
    tids += await insert_payments(pool, sim, 3, first=1)
    dead = await repo.payments.claim_pending("dead-worker", 10, 0.05)
    assert alive.tid == tids[0] and [c.tid for c in dead] == tids[1:]
    # The dead worker got the acquirer's answer for its first row and died before writing it.
    unwritten = await _acquirer(http, sim).authorize(dead[0])
    assert unwritten.status is Status.SUCCESS

    reaped = 0

    async def all_reaped() -> bool:
        nonlocal reaped
        reaped += await claim.reap(repo)
        return reaped >= 3

    await wait_until(all_reaped, what="the dead worker's leases are reaped")
    assert reaped == 3
    rows = {
        r["tid"]: r
        for r in await pool.fetch(
            "SELECT tid, status, lease_owner, lease_expires_at FROM payment_processes"
        )
    }
    assert rows[alive.tid]["status"] == "PROCESSING"
    assert rows[alive.tid]["lease_owner"] == "alive-worker"
    for c in dead:
        assert rows[c.tid]["status"] == "PENDING"
        assert rows[c.tid]["lease_owner"] is None and rows[c.tid]["lease_expires_at"] is None

    # The dead worker comes back late: its lease is gone, so its write changes nothing.
    assert await repo.payments.settle("dead-worker", [unwritten]) == []

    survivor = Worker(settings, repo, http, owner="survivor")
    result = await survivor.payments_pass()
    assert (result.claimed, result.settled) == (3, 3)
    charges = await ledger(http, sim)
    references = [c["reference"] for c in charges]
    assert sorted(references) == tids[1:]
    [charge] = [c for c in charges if c["reference"] == dead[0].tid]
    payment = await repo.payments.payment_by_tid(dead[0].tid, MID, "test")
    assert payment is not None and payment.status is Status.SUCCESS and payment.attempts == 2
    assert payment.approval_no == unwritten.approval_no == charge["approvalNo"]
    stats = await acquirer_stats(http, sim)
    assert stats["approved"] == 3 and stats["declined"] == 0
    assert (await statuses(pool))[alive.tid] == "PROCESSING"


# --- 5. retries within one call -----------------------------------------------------------


def _counting_session(
    connector: aiohttp.BaseConnector | None = None,
) -> tuple[aiohttp.ClientSession, list[str]]:
    """A session that records every request it starts (each attempt of a call)."""
    started: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_start(_s: object, _c: object, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(str(params.url))

    trace.on_request_start.append(on_start)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace]), started


class _RefusedFirst(aiohttp.abc.AbstractResolver):
    """The network, failing once: the first lookup names a port where nothing listens (the
    connection is refused, the request never sent), later ones the simulator's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[dict[str, Any]]:
        self.lookups += 1
        to = 9 if self.lookups == 1 else self.port
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": to,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def test_a_call_refused_once_is_sent_again_and_charges_once(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    resolver = _RefusedFirst(sim.port)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    session, started = _counting_session(connector)
    async with session:
        client = AcquirerClient(session, f"http://acquirer.test:{sim.port}/acquirer", 1.0, 3)
        claimed = Claimed(1, "DUMMY_20260101_00000002", 1000, "KRW", "ORD_2", 1)
        outcome = await client.authorize(claimed)
    assert outcome.status is Status.SUCCESS
    assert len(started) == 2 and resolver.lookups == 2
    [charge] = await ledger(http, sim)
    assert charge["reference"] == claimed.tid and charge["approvalNo"] == outcome.approval_no


async def test_a_call_refused_with_one_attempt_allowed_is_not_sent_again(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    connector = aiohttp.TCPConnector(resolver=_RefusedFirst(sim.port), use_dns_cache=False)
    session, started = _counting_session(connector)
    async with session:
        client = AcquirerClient(session, f"http://acquirer.test:{sim.port}/acquirer", 1.0, 1)
        claimed = Claimed(1, "DUMMY_20260101_00000003", 1000, "KRW", "ORD_3", 1)
        with pytest.raises(ProviderUnavailable) as caught:
            await client.authorize(claimed)
    assert caught.value.maybe_processed is False
    assert len(started) == 1
    assert await ledger(http, sim) == []


async def test_a_call_that_never_arrived_is_retried_up_to_max_attempts() -> None:
    session, started = _counting_session()
    async with session:
        client = AcquirerClient(session, "http://127.0.0.1:9/acquirer", 1.0, 3)
        claimed = Claimed(1, "DUMMY_20260101_00000001", 1000, "KRW", "ORD_1", 1)
        with pytest.raises(ProviderUnavailable) as caught:
            await client.authorize(claimed)
    assert caught.value.maybe_processed is False
    assert len(started) == 3


async def test_a_call_that_may_have_charged_is_never_repeated_within_the_call(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    await acquirer_config(http, sim, error_rate=1.0)  # every authorize answers 503
    session, started = _counting_session()
    async with session:
        client = AcquirerClient(session, f"{sim.url}/acquirer", 1.0, 3)
        claimed = Claimed(1, "DUMMY_20260101_00000001", 1000, "KRW", "ORD_1", 1)
        with pytest.raises(ProviderUnavailable) as caught:
            await client.authorize(claimed)
    assert caught.value.maybe_processed is True
    assert len(started) == 1
