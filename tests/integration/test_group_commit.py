"""The intake's group commit: concurrent inserts share a statement, and nothing is mixed up.

Each request must get its own row back (never a neighbour's), a duplicate order inside one
batch must still be one payment, and one request's bad row must not fail the others.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from api import state
from config.settings import Settings
from engine import errors, ids
from engine.models import NewPayment, Payment
from engine.payments import intake
from engine.store.repository import Repository
from tests.conftest import MID, SEED_REQUEST

Client = TestClient[Any, Any]
DEFAULT_URL = "http://127.0.0.1:9/hook"


def new_payment(order_id: str, amount: int = 1000, **changes: Any) -> NewPayment:
    fields: dict[str, Any] = {
        "mid": MID,
        "order_id": order_id,
        "user_public_id": "USR_1",
        "amount": amount,
        "currency": "KRW",
        "echo": {"order": order_id},
        "webhook_url": None,
        "request_digest": f"digest-{order_id}-{amount}",
        "mode": "test",
    } | changes
    return NewPayment(**fields)


async def insert(
    group: intake.GroupCommit, new: NewPayment, tid: str | None = None
) -> Payment | None:
    return await group.insert_payment(
        new,
        public_id=f"pub_{new.order_id}",
        tid=tid or ids.new_tid("DUMMY"),
        default_webhook_url=DEFAULT_URL,
    )


async def test_concurrent_inserts_share_one_statement_and_each_gets_its_own_row(
    repo: Repository, pool: asyncpg.Pool
) -> None:
    group = intake.GroupCommit(repo.payments, max_batch=256, in_flight=4)
    news = [new_payment(f"ORD_{i:03d}", amount=1000 + i) for i in range(100)]
    got = await asyncio.gather(*(insert(group, n) for n in news))
    # All 100 were queued before the first statement ran: one statement carried them all.
    assert (group.statements, group.rows) == (1, 100)
    for n, p in zip(news, got, strict=True):
        assert p is not None
        assert (p.order_id, p.amount, p.echo, p.webhook_url) == (
            n.order_id,
            n.amount,
            {"order": n.order_id},
            DEFAULT_URL,
        )
    stored = {
        r["tid"]: (r["order_id"], r["amount"])
        for r in await pool.fetch("SELECT tid, order_id, amount FROM payment_processes")
    }
    assert stored == {p.tid: (p.order_id, p.amount) for p in got if p is not None}
    # And every row has its history's first event, as a single insert would.
    assert await pool.fetchval("SELECT count(DISTINCT payment_id) FROM payment_events") == 100


async def test_batches_are_capped_by_max_batch(repo: Repository, pool: asyncpg.Pool) -> None:
    group = intake.GroupCommit(repo.payments, max_batch=7, in_flight=2)
    got = await asyncio.gather(*(insert(group, new_payment(f"ORD_{i}")) for i in range(50)))
    assert all(p is not None for p in got)
    assert group.rows == 50 and group.statements == 8  # ceil(50 / 7)
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 50


async def test_a_lone_insert_goes_at_once(repo: Repository) -> None:
    group = intake.GroupCommit(repo.payments)
    assert await insert(group, new_payment("ORD_ALONE")) is not None
    assert (group.statements, group.rows) == (1, 1)


async def test_the_same_order_twice_in_one_batch_is_one_payment(
    repo: Repository, pool: asyncpg.Pool
) -> None:
    group = intake.GroupCommit(repo.payments)
    twice = new_payment("ORD_TWICE")
    got = await asyncio.gather(*(insert(group, twice) for _ in range(5)))
    assert group.statements == 1
    assert sum(p is not None for p in got) == 1
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 1


async def test_accept_through_the_group_makes_one_payment_and_replays(
    repo: Repository, pool: asyncpg.Pool
) -> None:
    group = intake.GroupCommit(repo.payments)
    snowflake = ids.Snowflake(await repo.ops.next_node_id())
    same = new_payment("ORD_SAME")
    accepted = await asyncio.gather(
        *(
            intake.accept(
                group,
                same,
                snowflake=snowflake,
                tid_prefix="DUMMY",
                default_webhook_url=DEFAULT_URL,
            )
            for _ in range(20)
        )
    )
    assert sum(a.created for a in accepted) == 1
    assert len({a.payment.tid for a in accepted}) == 1
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 1


async def test_a_taken_tid_leaves_out_only_its_own_row(
    repo: Repository, pool: asyncpg.Pool
) -> None:
    """Nine new rows go in; the one whose tid is taken gets no row (accept() draws again)."""
    group = intake.GroupCommit(repo.payments)
    taken = await insert(group, new_payment("ORD_FIRST"))
    assert taken is not None
    results = await asyncio.gather(
        *(insert(group, new_payment(f"ORD_{i}")) for i in range(9)),
        insert(group, new_payment("ORD_CLASH"), tid=taken.tid),
    )
    assert all(isinstance(r, Payment) for r in results[:9]), results
    assert results[9] is None
    # One statement for the ten: a taken tid does not send the batch row by row.
    assert (group.statements, group.rows) == (2, 11)
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 10
    assert await repo.payments.payment_by_order(MID, "ORD_CLASH", "test") is None


async def test_a_row_the_database_refuses_fails_only_its_own_request(
    repo: Repository, pool: asyncpg.Pool
) -> None:
    group = intake.GroupCommit(repo.payments)
    results = await asyncio.gather(
        *(insert(group, new_payment(f"ORD_{i}")) for i in range(5)),
        insert(group, new_payment("ORD_ZERO", amount=0)),  # CHECK (amount > 0)
        return_exceptions=True,
    )
    assert all(isinstance(r, Payment) for r in results[:5]), results
    assert isinstance(results[5], asyncpg.CheckViolationError)
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 5


async def test_a_database_outage_fails_every_request_of_the_batch_as_unavailable() -> None:
    # Nothing listens on the discard port: every connection is refused, as with a server down.
    gone = await asyncpg.create_pool("postgresql://engine@127.0.0.1:9/engine", min_size=0)
    try:
        group = intake.GroupCommit(Repository(gone).payments)
        results = await asyncio.gather(
            *(insert(group, new_payment(f"ORD_{i}")) for i in range(5)), return_exceptions=True
        )
    finally:
        await gone.close()
    assert all(isinstance(r, errors.DatabaseUnavailable) for r in results), results
    assert group.statements == 1  # not retried row by row: the rows are not at fault


async def test_concurrent_http_requests_each_get_their_own_payment(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    bodies = [
        dict(json.loads(json.dumps(SEED_REQUEST)), orderId=f"ORD_{i:03d}", amount=100 + i)
        for i in range(120)
    ]
    responses = await asyncio.gather(*(client.post("/api/payment", json=b) for b in bodies))
    acks = [await r.json() for r in responses]
    assert [r.status for r in responses] == [202] * 120
    stored = {
        r["tid"]: (r["order_id"], r["amount"])
        for r in await pool.fetch("SELECT tid, order_id, amount FROM payment_processes")
    }
    assert len(stored) == 120
    for body, ack in zip(bodies, acks, strict=True):
        assert stored[ack["transactionId"]] == (body["orderId"], body["amount"])
        assert ack["amount"] == body["amount"]
    group = client.app[state.INSERTS]
    assert group.rows == 120
    assert 1 <= group.statements <= 120


async def test_max_batch_one_is_one_statement_per_request(repo: Repository) -> None:
    group = intake.GroupCommit(repo.payments, max_batch=1, in_flight=1)
    await asyncio.gather(*(insert(group, new_payment(f"ORD_{i}")) for i in range(10)))
    assert (group.statements, group.rows) == (10, 10)
