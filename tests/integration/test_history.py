"""The merchant's history: payment timelines, and the listing with filters, cursors and indexes.

The listing is checked against an oracle: the same dataset filtered and sorted in Python.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.merchants import keys
from engine.models import HistoryKey, HistoryKind
from engine.reports import PaymentQuery
from engine.store.queries import load
from engine.store.reports import AMOUNT_PAGE, FILTER_PAGE, PAGE, SEARCH_PAGE, page_statement
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.integration.engine_support import acquirer_config

Q = load("reports")
LIST = "/api/payments"
EVENTS = "/api/payments/{}/events"
PROBLEM = "application/problem+json"
OTHER = "other_mid_002"
# Long before any payment the tests make through the API (those are stamped now()).
BASE = datetime(2025, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """BASE plus some minutes."""
    return BASE + timedelta(minutes=minutes)


def iso(ts: datetime) -> str:
    """How a query string carries an instant (with its offset)."""
    return ts.isoformat()


@dataclass(frozen=True)
class Item:
    """What the listing should show for one row of the dataset."""

    kind: str
    id: int
    tid: str
    refund_id: str | None
    order_id: str
    order_name: str | None
    customer_id: str
    amount: int
    status: str
    created_at: datetime

    @property
    def key(self) -> tuple[datetime, str, int]:
        """The listing's order, newest first."""
        return (self.created_at, self.kind, self.id)

    def api(self) -> dict[str, Any]:
        """The item as the API answers it."""
        return {
            "kind": self.kind,
            "tid": self.tid,
            "refundId": self.refund_id,
            "orderId": self.order_id,
            "orderName": self.order_name,
            "customerId": self.customer_id,
            "amount": self.amount,
            "currency": "KRW",
            "status": self.status,
            "createdAt": self.created_at.isoformat(),
        }


_PAYMENT = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, status, approval_no, fail_reason,
     request_digest, webhook_url, requested_at, updated_at, order_name, canceled_at, last_actor,
     mode)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'AP1', CASE WHEN $7 = 'FAILED' THEN 'declined' END,
        'digest', 'http://127.0.0.1:9/hook', $8, $9, $10, $11, 'admin', 'test')
RETURNING id
"""

_REFUND = """
INSERT INTO refunds
    (public_id, payment_id, mid, amount, currency, idempotency_key, request_digest, status,
     requested_at, mode)
VALUES ($1, $2, $3, $4, 'KRW', $1, 'digest', $5, $6, 'test')
RETURNING id
"""


class Dataset:
    """Rows written straight into the tables, and the items the listing should make of them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.items: dict[str, list[Item]] = {}
        self._n = 0
        self._payments: dict[str, tuple[int, str, Item]] = {}

    async def payment(
        self,
        mid: str,
        order_id: str,
        *,
        minute: int,
        amount: int = 1000,
        status: str = "SUCCESS",
        name: str | None = None,
        customer: str = "CUST_A",
        canceled_minute: int | None = None,
        updated_minute: int | None = None,
    ) -> str:
        """A payment (canceled when status is CANCELED); returns its tid."""
        self._n += 1
        tid = f"HIST_20250101_{self._n:08d}"
        updated = at(updated_minute if updated_minute is not None else minute)
        canceled = at(canceled_minute) if canceled_minute is not None else None
        pid = await self.pool.fetchval(
            _PAYMENT,
            f"pub{self._n:08d}",
            tid,
            mid,
            order_id,
            customer,
            amount,
            status,
            at(minute),
            updated,
            name,
            canceled,
        )
        if status == "CANCELED":
            kind, created = "cancel", canceled or updated
        else:
            kind, created = "payment", at(minute)
        item = Item(kind, pid, tid, None, order_id, name, customer, amount, status, created)
        self.items.setdefault(mid, []).append(item)
        self._payments[tid] = (pid, mid, item)
        return tid

    async def refund(self, tid: str, *, minute: int, amount: int, status: str) -> str:
        """A refund of payment `tid`; returns its public id."""
        self._n += 1
        public_id = f"RF{self._n:08d}"
        pid, mid, p = self._payments[tid]
        rid = await self.pool.fetchval(_REFUND, public_id, pid, mid, amount, status, at(minute))
        self.items[mid].append(
            Item(
                "refund",
                rid,
                tid,
                public_id,
                p.order_id,
                p.order_name,
                p.customer_id,
                amount,
                status,
                at(minute),
            )
        )
        return public_id

    def expected(self, mid: str, keep: Callable[[Item], bool] = lambda i: True) -> list[Item]:
        """The merchant's items that `keep` accepts, in the listing's order."""
        return sorted(filter(keep, self.items.get(mid, [])), key=lambda i: i.key, reverse=True)


@pytest.fixture
async def data(pool: asyncpg.Pool, api_key: str) -> Dataset:
    """Payments, cancels and refunds of MID (with ties in time), and a few of another merchant."""
    d = Dataset(pool)
    await d.payment(MID, "ORD-1001", minute=1, amount=1000, name="Blue Shirt")
    await d.payment(
        MID,
        "ORD-1002",
        minute=2,
        amount=2500,
        status="FAILED",
        name="blue shoes",
        customer="CUST_B",
    )
    await d.payment(MID, "ORD-2001", minute=3, amount=4000, status="PENDING", name="Red Hat")
    p4 = await d.payment(
        MID,
        "ORD-2002",
        minute=4,
        amount=10000,
        status="PARTIALLY_REFUNDED",
        name="Green Scarf",
        customer="CUST_C",
    )
    p5 = await d.payment(MID, "INV_77", minute=5, amount=7000, status="REFUNDED", customer="CUST_B")
    p6 = await d.payment(MID, "ORD%3", minute=6, amount=5000, name="100% Cotton")
    await d.payment(
        MID,
        "ORD-3001",
        minute=7,
        amount=3000,
        status="CANCELED",
        name="Blue Cap",
        customer="CUST_C",
        canceled_minute=9,
    )
    # Canceled without canceled_at: listed at updated_at.
    await d.payment(
        MID,
        "ORD-3002",
        minute=8,
        amount=6000,
        status="CANCELED",
        name="Yellow",
        customer="CUST_D",
        updated_minute=13,
    )
    # Minute 9 holds a cancel and two payments: ties broken by kind, then id.
    await d.payment(
        MID,
        "ORD-1003",
        minute=9,
        amount=8000,
        status="UNRESOLVED",
        name="BLUE jeans",
        customer="CUST_D",
    )
    await d.payment(MID, "ORD-1004", minute=9, amount=9000, name="Socks")
    await d.refund(p4, minute=10, amount=3000, status="REFUNDED")
    await d.refund(p5, minute=11, amount=7000, status="REFUNDED")
    # At the very minute of its payment: a refund and a payment tie.
    await d.refund(p6, minute=6, amount=500, status="REFUND_PENDING")
    await d.refund(p6, minute=12, amount=200, status="REFUND_FAILED")
    # Another merchant with look-alike orders: never listed for MID.
    await d.payment(OTHER, "ORD-1001", minute=5, name="Blue Shirt")
    await d.payment(OTHER, "ORD-1009", minute=9, status="CANCELED", canceled_minute=10)
    o3 = await d.payment(OTHER, "ORD-1010", minute=3, name="blue", status="PARTIALLY_REFUNDED")
    await d.refund(o3, minute=10, amount=100, status="REFUNDED")
    return d


async def other_headers(repo: Repository, settings: Settings) -> dict[str, str]:
    """The Authorization header of a key of OTHER."""
    await repo.merchants.create_merchant(OTHER, "Other merchant")
    key = (await repo.merchants.issue_key(OTHER, "test", settings.api_key_secret)).key
    return {"Authorization": f"Bearer {key}"}


async def listing(
    client: TestClient, params: dict[str, str] | str = "", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """GET /api/payments, requiring a 200."""
    query = params if isinstance(params, str) else urlencode(params)
    resp = await client.get(f"{LIST}?{query}" if query else LIST, headers=headers)
    text = await resp.text()
    assert resp.status == 200, text
    assert resp.content_type == "application/json"
    body: dict[str, Any] = json.loads(text)
    assert set(body) == {"items", "next"}
    return body


async def walk(client: TestClient, params: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Every item of every page, following `next` until it is null."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        page = await listing(
            client, {**params, "limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        )
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items
        assert len(page["items"]) == limit
    raise AssertionError("the walk did not end")


async def problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """A problem+json body of the expected status."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == PROBLEM
    body: dict[str, Any] = json.loads(text)
    assert body["status"] == status
    return body


# --- a payment's timeline ---


async def test_events_show_the_lifecycle_with_actors(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    api_key: str,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    resp = await client.post("/api/payment", json={**SEED_REQUEST, "orderName": "Seed order"})
    assert resp.status == 202
    tid = (await resp.json())["transactionId"]
    assert (await Worker(settings, repo, http, owner="w").payments_pass()).settled == 1

    resp = await client.get(EVENTS.format(tid))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["tid"] == tid
    merchant = f"merchant:{keys.display_prefix(api_key)}"
    assert [(e["from"], e["to"], e["actor"], e["refundId"]) for e in body["events"]] == [
        (None, "PENDING", merchant, None),
        ("PENDING", "PROCESSING", "w", None),
        ("PROCESSING", "SUCCESS", "w", None),
    ]
    ids = [e["id"] for e in body["events"]]
    times = [datetime.fromisoformat(e["at"]) for e in body["events"]]
    assert ids == sorted(ids) and times == sorted(times)
    assert all(t.utcoffset() is not None for t in times)

    # A refund's changes join the payment's timeline, naming the refund.
    pid = await pool.fetchval("SELECT id FROM payment_processes WHERE tid = $1", tid)
    rid = await pool.fetchval(_REFUND, "RF_EVENTS_1", pid, MID, 100, "REFUND_PENDING", at(0))
    await pool.execute(
        "UPDATE refunds SET status = 'REFUNDED', last_actor = 'w2' WHERE id = $1", rid
    )
    events = (await (await client.get(EVENTS.format(tid))).json())["events"]
    assert [(e["from"], e["to"], e["actor"], e["refundId"]) for e in events[3:]] == [
        (None, "REFUND_PENDING", "engine", "RF_EVENTS_1"),
        ("REFUND_PENDING", "REFUNDED", "w2", "RF_EVENTS_1"),
    ]


async def test_a_batch_records_one_event_per_row_whose_status_changed(
    client: TestClient,
    repo: Repository,
    pool: asyncpg.Pool,
    settings: Settings,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
) -> None:
    # The history triggers run once per statement (0009): a batch claim and a batch settle
    # must still record each row's change, and an update that keeps the status records none.
    await acquirer_config(http, sim, success_rate=1.0)
    tids = []
    for n in range(5):
        resp = await client.post("/api/payment", json={**SEED_REQUEST, "orderId": f"EV-{n}"})
        assert resp.status == 202
        tids.append((await resp.json())["transactionId"])
    await pool.execute("UPDATE payment_processes SET updated_at = now(), last_actor = 'x'")
    assert await pool.fetchval("SELECT count(*) FROM payment_events") == 5
    worker = Worker(settings, repo, http, owner="w")
    assert (await worker.payments_pass()).settled == 5
    for tid in tids:
        events = (await (await client.get(EVENTS.format(tid))).json())["events"]
        assert [(e["from"], e["to"], e["actor"]) for e in events][1:] == [
            ("PENDING", "PROCESSING", "w"),
            ("PROCESSING", "SUCCESS", "w"),
        ]
    assert await pool.fetchval("SELECT count(*) FROM payment_events") == 15


async def test_events_are_append_only(client: TestClient, pool: asyncpg.Pool) -> None:
    resp = await client.post("/api/payment", json=SEED_REQUEST)
    assert resp.status == 202
    assert await pool.fetchval("SELECT count(*) FROM payment_events") == 1
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE payment_events SET actor = 'someone else'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("DELETE FROM payment_events")
    assert await pool.fetchval("SELECT actor FROM payment_events") != "someone else"


async def test_events_of_another_merchants_payment_are_not_found(
    client: TestClient, data: Dataset, repo: Repository, settings: Settings
) -> None:
    [theirs] = [i.tid for i in data.items[OTHER] if i.order_id == "ORD-1001"]
    mine = data.items[MID][0].tid
    for tid in (theirs, "HIST_20250101_99999999", "not-a-tid"):
        body = await problem(await client.get(EVENTS.format(tid)), 404)
        # The same answer as the lookup of an unknown tid: existence never leaks.
        lookup = await problem(await client.get(f"/api/payment/transaction/{tid}"), 404)
        assert {k: v for k, v in body.items() if k != "instance"} == {
            k: v for k, v in lookup.items() if k != "instance"
        }
    assert (await client.get(EVENTS.format(mine))).status == 200
    headers = await other_headers(repo, settings)
    assert (await client.get(EVENTS.format(theirs), headers=headers)).status == 200
    await problem(await client.get(EVENTS.format(mine), headers=headers), 404)


# --- the listing ---


async def test_default_listing_is_everything_newest_first(
    client: TestClient, data: Dataset
) -> None:
    body = await listing(client)
    assert body["items"] == [i.api() for i in data.expected(MID)]
    assert body["next"] is None
    kinds = {(i["orderId"], i["kind"]) for i in body["items"]}
    # A canceled payment is a cancel only, at its canceled_at (else updated_at).
    assert ("ORD-3001", "cancel") in kinds and ("ORD-3001", "payment") not in kinds
    cancels = {i["orderId"]: i["createdAt"] for i in body["items"] if i["kind"] == "cancel"}
    assert cancels == {"ORD-3001": at(9).isoformat(), "ORD-3002": at(13).isoformat()}
    # A refunded payment stays a payment; each refund is an item with its own amount.
    refunds = [
        (i["orderId"], i["amount"], i["refundId"]) for i in body["items"] if i["kind"] == "refund"
    ]
    assert ("ORD-2002", "payment") in kinds
    assert sorted(refunds) == [
        ("INV_77", 7000, "RF00000012"),
        ("ORD%3", 200, "RF00000014"),
        ("ORD%3", 500, "RF00000013"),
        ("ORD-2002", 3000, "RF00000011"),
    ]


def _q(q: str) -> Callable[[Item], bool]:
    return lambda i: (
        i.order_id.startswith(q)
        or (i.order_name or "").lower().startswith(q.lower())
        or i.customer_id.startswith(q)
    )


FILTERS: list[tuple[dict[str, str], Callable[[Item], bool]]] = [
    ({"kind": "payment"}, lambda i: i.kind == "payment"),
    ({"kind": "cancel"}, lambda i: i.kind == "cancel"),
    ({"kind": "refund"}, lambda i: i.kind == "refund"),
    ({"kind": "payment,refund"}, lambda i: i.kind != "cancel"),
    ({"kind": "cancel,payment,refund"}, lambda i: True),
    ({"status": "SUCCESS"}, lambda i: i.status == "SUCCESS"),
    # REFUNDED is a payment's status and a refund's.
    ({"status": "REFUNDED"}, lambda i: i.status == "REFUNDED"),
    ({"status": "CANCELED"}, lambda i: i.kind == "cancel"),
    (
        {"status": "REFUND_PENDING,FAILED,UNRESOLVED"},
        lambda i: i.status in ("REFUND_PENDING", "FAILED", "UNRESOLVED"),
    ),
    ({"status": "PROCESSING"}, lambda i: False),
    ({"from": iso(at(9))}, lambda i: i.created_at >= at(9)),
    ({"to": iso(at(9))}, lambda i: i.created_at < at(9)),
    ({"from": iso(at(4)), "to": iso(at(10))}, lambda i: at(4) <= i.created_at < at(10)),
    # The same instants written with another offset.
    (
        {
            "from": at(4).astimezone(timezone(timedelta(hours=9))).isoformat(),
            "to": at(10).astimezone(timezone(timedelta(hours=-5))).isoformat(),
        },
        lambda i: at(4) <= i.created_at < at(10),
    ),
    ({"minAmount": "3000"}, lambda i: i.amount >= 3000),
    ({"maxAmount": "3000"}, lambda i: i.amount <= 3000),
    ({"minAmount": "3000", "maxAmount": "7000"}, lambda i: 3000 <= i.amount <= 7000),
    ({"minAmount": "7000", "maxAmount": "7000"}, lambda i: i.amount == 7000),
    # q: a prefix of the order id (case-sensitive) ...
    ({"q": "ORD-1"}, _q("ORD-1")),
    ({"q": "ORD-100"}, _q("ORD-100")),
    ({"q": "ord-1"}, lambda i: False),
    # ... of the order name, in any case ...
    ({"q": "blue"}, _q("blue")),
    ({"q": "BLUE S"}, _q("BLUE S")),
    # ... or of the customer id (case-sensitive); no wildcards.
    ({"q": "CUST_B"}, _q("CUST_B")),
    ({"q": "cust_b"}, lambda i: False),
    ({"q": "ORD%"}, lambda i: i.order_id == "ORD%3"),
    ({"q": "100%"}, lambda i: i.order_name == "100% Cotton"),
    ({"q": "_"}, lambda i: False),
    ({"q": "Shirt"}, lambda i: False),
    # Combined.
    (
        {"kind": "payment", "status": "SUCCESS", "minAmount": "2000"},
        lambda i: i.kind == "payment" and i.status == "SUCCESS" and i.amount >= 2000,
    ),
    ({"kind": "refund", "q": "CUST_B"}, lambda i: i.kind == "refund" and _q("CUST_B")(i)),
    (
        {"q": "blue", "status": "SUCCESS,CANCELED", "from": iso(at(1)), "to": iso(at(9))},
        lambda i: (
            _q("blue")(i) and i.status in ("SUCCESS", "CANCELED") and at(1) <= i.created_at < at(9)
        ),
    ),
    (
        {"kind": "cancel,refund", "maxAmount": "3000", "from": iso(at(9))},
        lambda i: i.kind in ("cancel", "refund") and i.amount <= 3000 and i.created_at >= at(9),
    ),
]


@pytest.mark.parametrize(("params", "keep"), FILTERS, ids=[urlencode(p) for p, _ in FILTERS])
async def test_filters_alone_and_combined(
    client: TestClient, data: Dataset, params: dict[str, str], keep: Callable[[Item], bool]
) -> None:
    expected = [i.api() for i in data.expected(MID, keep)]
    assert (await listing(client, params))["items"] == expected
    # Paged two at a time, the same items in the same order.
    assert await walk(client, params, 2) == expected


async def test_repeated_parameters_and_unencoded_plus(client: TestClient, data: Dataset) -> None:
    both = await listing(client, "kind=cancel&kind=refund")
    assert both["items"] == [i.api() for i in data.expected(MID, lambda i: i.kind != "payment")]
    # A "+" of an offset left unencoded arrives as a space; it still means "+".
    plus = await listing(client, "from=2025-01-01T09:09:00+09:00")
    assert plus["items"] == [i.api() for i in data.expected(MID, lambda i: i.created_at >= at(9))]
    zulu = await listing(client, {"from": "2025-01-01T00:09:00Z"})
    assert zulu["items"] == plus["items"]


async def test_date_range_is_half_open(client: TestClient, data: Dataset) -> None:
    # Exactly at minute 9: a cancel and two payments.
    nine = [i.api() for i in data.expected(MID, lambda i: i.created_at == at(9))]
    assert len(nine) == 3
    window = {"from": iso(at(9)), "to": iso(at(9) + timedelta(microseconds=1))}
    assert (await listing(client, window))["items"] == nine
    assert (await listing(client, {"from": iso(at(8)), "to": iso(at(9))}))["items"] == [
        i.api() for i in data.expected(MID, lambda i: i.created_at == at(8))
    ]


async def test_pages_walk_every_item_once_in_order_while_payments_arrive(
    client: TestClient, data: Dataset
) -> None:
    everything = data.expected(MID)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = await listing(client, query)
        seen += page["items"]
        pages += 1
        # Payments arrive between pages: one after every page (newer than anything listed, so
        # before the cursor) and one among the items still to come, which the walk then shows.
        resp = await client.post("/api/payment", json={**SEED_REQUEST, "orderId": f"NEW-{pages}"})
        assert resp.status == 202
        if pages == 2:
            await data.payment(MID, "MIDDLE-1", minute=2, amount=1234)
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 5
    middle = [i for i in data.expected(MID) if i.order_id == "MIDDLE-1"]
    assert seen == [
        i.api() for i in sorted([*everything, *middle], key=lambda i: i.key, reverse=True)
    ]
    # The new payments are there for a new walk, on top.
    fresh = await listing(client, {"limit": "4"})
    assert [i["orderId"] for i in fresh["items"]] == ["NEW-5", "NEW-4", "NEW-3", "NEW-2"]


async def test_limit_bounds_pages(client: TestClient, data: Dataset) -> None:
    everything = [i.api() for i in data.expected(MID)]
    one = await listing(client, {"limit": "1"})
    assert one["items"] == everything[:1] and one["next"]
    exact = await listing(client, {"limit": str(len(everything))})
    assert exact["items"] == everything and exact["next"] is None
    assert (await listing(client, {"limit": "200"}))["items"] == everything


async def test_default_limit_is_50(client: TestClient, pool: asyncpg.Pool, api_key: str) -> None:
    d = Dataset(pool)
    for n in range(51):
        await d.payment(MID, f"BULK-{n:03d}", minute=n)
    page = await listing(client)
    assert len(page["items"]) == 50 and page["next"]
    rest = await listing(client, {"cursor": page["next"]})
    assert [i["orderId"] for i in rest["items"]] == ["BULK-000"] and rest["next"] is None


BAD: list[tuple[str, str]] = [
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("limit=-1", "limit"),
    ("limit=ten", "limit"),
    ("limit=1.5", "limit"),
    ("limit=", "limit"),
    ("limit=5&limit=6", "limit"),
    ("kind=payments", "kind"),
    ("kind=", "kind"),
    ("kind=payment,", "kind"),
    ("kind=PAYMENT", "kind"),
    ("status=PAID", "status"),
    ("status=success", "status"),
    ("from=yesterday", "from"),
    ("from=2025-01-01T00:00:00", "from"),
    ("from=2025-01-01", "from"),
    ("to=2025-13-01T00:00:00Z", "to"),
    ("from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
    ("from=2025-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
    ("from=0001-01-01T00:00:00%2B09:00", "from"),
    ("minAmount=-1", "minAmount"),
    ("minAmount=1e3", "minAmount"),
    ("maxAmount=99999999999999999999", "maxAmount"),
    ("minAmount=10&maxAmount=9", "maxAmount"),
    ("q=", "q"),
    ("q=" + "x" * 201, "q"),
    ("q=a%00b", "q"),
    ("cursor=", "cursor"),
    ("cursor=garbage", "cursor"),
    ("cursor=a.b.c", "cursor"),
    ("cursor=%F0%9F%98%80.x", "cursor"),
]


@pytest.mark.parametrize(("query", "field"), BAD, ids=[q[:40] for q, _ in BAD])
async def test_invalid_parameters_are_422_naming_them(
    client: TestClient, query: str, field: str
) -> None:
    body = await problem(await client.get(f"{LIST}?{query}"), 422)
    assert body["field"] == field
    assert body["type"] == "/problems/validation-error"


async def test_tampered_or_foreign_cursor_is_422(
    client: TestClient, data: Dataset, repo: Repository, settings: Settings
) -> None:
    cursor = (await listing(client, {"limit": "2"}))["next"]
    assert cursor
    body, tag = cursor.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    # Move the position (a valid cursor's payload, re-encoded) without the server's tag.
    payload[2] += 1
    forged = f"{base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip('=')}.{tag}"
    flipped = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    for bad in (forged, flipped, cursor + "A", body, f"{body}."):
        problem_body = await problem(await client.get(f"{LIST}?cursor={bad}"), 422)
        assert problem_body["field"] == "cursor"
    # A cursor is the merchant's own: another merchant's key cannot use it.
    headers = await other_headers(repo, settings)
    await problem(await client.get(f"{LIST}?cursor={cursor}", headers=headers), 422)
    assert (await client.get(f"{LIST}?cursor={cursor}")).status == 200


async def test_another_merchants_items_never_appear(
    client: TestClient, data: Dataset, repo: Repository, settings: Settings
) -> None:
    mine = {i.tid for i in data.items[MID]}
    theirs = {i.tid for i in data.items[OTHER]}
    for params in (
        {},
        {"q": "ORD-10"},
        {"q": "blue"},
        {"kind": "cancel,refund"},
        {"status": "REFUNDED,CANCELED,SUCCESS"},
    ):
        assert {i["tid"] for i in (await listing(client, params))["items"]} <= mine
        assert {i["tid"] for i in await walk(client, params, 1)} <= mine
    headers = await other_headers(repo, settings)
    other = await listing(client, headers=headers)
    assert other["items"] == [i.api() for i in data.expected(OTHER)]
    assert {i["tid"] for i in other["items"]} == theirs


async def test_unauthenticated_is_401(client: TestClient) -> None:
    for path in (LIST, EVENTS.format("HIST_20250101_00000001")):
        resp = await client.get(path, headers={"Authorization": "Bearer nope"})
        assert (await problem(resp, 401))["field"] == "Authorization"


# --- a million rows ---

MERCHANTS = 5
ROWS = 1_000_000

_BULK = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, status, approval_no, fail_reason,
     request_digest, webhook_url, requested_at, updated_at, order_name, canceled_at, mode)
SELECT 'b' || i, 'BULK_20250101_' || lpad(i::text, 8, '0'), 'bulk_' || (i % $1),
       'ORD-' || lpad(i::text, 8, '0'), 'CUST_' || (i % 9973), 1000 + (i * 7919) % 100000,
       s.status, 'AP' || i, CASE WHEN s.status = 'FAILED' THEN 'declined' END,
       'digest', 'http://127.0.0.1:9/hook', t.at, t.at, 'Item ' || (i % 5003),
       CASE WHEN s.status = 'CANCELED' THEN t.at + interval '1 minute' END, 'test'
FROM generate_series(1, $2::bigint) AS i,
     LATERAL (SELECT timestamptz '2025-01-01 00:00:00+00' + i * interval '3 seconds' AS at) t,
     LATERAL (SELECT CASE WHEN i % 97 = 0 THEN 'CANCELED' WHEN i % 7 = 0 THEN 'FAILED'
                          WHEN i % 53 = 1 THEN 'REFUNDED' ELSE 'SUCCESS' END AS status) s
"""

_BULK_REFUNDS = """
INSERT INTO refunds
    (public_id, payment_id, mid, amount, currency, idempotency_key, request_digest, status,
     requested_at, mode)
SELECT 'RFB' || p.id, p.id, p.mid, p.amount, 'KRW', 'RFB' || p.id, 'digest', 'REFUNDED',
       p.requested_at + interval '1 hour', p.mode
FROM payment_processes p WHERE p.status = 'REFUNDED'
"""


# Indexes of payment_processes and payment_search that back no constraint.
_PLAIN_INDEXES = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.tablename IN ('payment_processes', 'payment_search') AND NOT EXISTS (
    SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexname::regclass)
"""


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


@pytest.mark.timeout(180)
async def test_a_million_payments_are_listed_through_indexes(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.monotonic()
        await conn.execute("SET maintenance_work_mem = '256MB'")
        # Loading first and indexing after is several times faster than keeping the indexes up
        # row by row; the indexes are rebuilt from their own definitions (constraints stay).
        indexes = await conn.fetch(_PLAIN_INDEXES)
        assert {"payment_processes_history_idx", "payment_search_order_id_prefix_idx"} <= {
            r["indexname"] for r in indexes
        }
        for r in indexes:
            await conn.execute(f"DROP INDEX {r['indexname']}")
        # The history triggers write one event per row; a bulk load of old rows needs none.
        await conn.execute("ALTER TABLE payment_processes DISABLE TRIGGER USER")
        try:
            await conn.execute(_BULK, MERCHANTS, ROWS)
        finally:
            await conn.execute("ALTER TABLE payment_processes ENABLE TRIGGER USER")
        # The search columns' table, which the insert's trigger would have written.
        await conn.execute("SELECT rebuild_payment_search()")
        for r in indexes:
            await conn.execute(r["indexdef"])
        await conn.execute(_BULK_REFUNDS)
        await conn.execute("ANALYZE payment_processes")
        await conn.execute("ANALYZE payment_search")
        await conn.execute("ANALYZE refunds")
        loaded = time.monotonic() - started
        assert await conn.fetchval("SELECT count(*) FROM payment_processes") == ROWS
        assert not await conn.fetchval(
            "SELECT count(*) FROM payment_events WHERE refund_id IS NULL"
        )

        mid = "bulk_3"
        walk_by_time, by_order_id = (
            "payment_processes_history_idx",
            "payment_search_order_id_prefix_idx",
        )
        # The walk by time through payment_search's narrow rows (migration 0017).
        walk_search = "payment_search_history_idx"
        # Each case, and the index its payments branch must use.
        cases = {
            "default page": (PaymentQuery(), walk_by_time),
            "second page": (PaymentQuery(), walk_by_time),
            "status": (PaymentQuery(statuses=frozenset({"FAILED"})), walk_by_time),
            "date range": (
                PaymentQuery(
                    created_from=datetime(2025, 1, 10, tzinfo=UTC),
                    created_to=datetime(2025, 1, 11, tzinfo=UTC),
                ),
                walk_by_time,
            ),
            "q search": (PaymentQuery(search="ORD-0012345"), by_order_id),
            "q customer": (
                PaymentQuery(search="CUST_4242", kinds=frozenset({"payment"})),
                "payment_search_customer_prefix_idx",
            ),
            "q customer, every kind": (
                PaymentQuery(search="CUST_4242"),
                "payment_search_customer_prefix_idx",
            ),
            "q tid": (PaymentQuery(search="BULK_20250101_00123458"), "payment_processes_tid_key"),
            # 'Item 1' prefixes 1,111 of the 5,003 names: tens of thousands of matches, dense
            # enough that the walk by time meets a page of them soon.
            "q broad name": (PaymentQuery(search="item 1"), walk_search),
            # The value filters read payment_search, whose indexes serve them (migration 0017).
            "narrow amount": (
                PaymentQuery(amount_min=4000, amount_max=4010),
                "payment_search_amount_idx",
            ),
            "currency": (PaymentQuery(currency="KRW"), walk_search),
            # 2 % of a merchant's 200,000 amounts: listed from the amount index's matches
            # (AMOUNT_PAGE), as any range under SEARCH_SET_MAX matches.
            "failed, amount from": (
                PaymentQuery(statuses=frozenset({"FAILED"}), amount_min=99_000),
                "payment_search_amount_idx",
            ),
            # Every amount from 2,000 up: too many matches to sort, so the walk by time.
            "amount from, many": (PaymentQuery(amount_min=2_000), walk_search),
        }
        # A walk by time: what a search with few matches must not do in any branch (it would
        # pass over every row of the merchant looking for them).
        walks = {
            walk_by_time,
            walk_search,
            "payment_processes_canceled_idx",
            "payment_processes_canceled_untimed_idx",
            "refunds_history_idx",
        }
        statement = await page_statement(conn, PaymentQuery().params(mid, "test", None, 51))
        first = await conn.fetch(statement, *PaymentQuery().params(mid, "test", None, 51))
        last = first[49]
        after = HistoryKey(last["created_at"], HistoryKind(last["kind"]), last["id"])
        report: list[str] = [f"loaded {ROWS} payments in {loaded:.1f}s"]
        for name, (filters, index) in cases.items():
            args = filters.params(mid, "test", after if name == "second page" else None, 51)
            async with conn.transaction():
                await conn.execute(Q["custom_plans"])
                statement = await page_statement(conn, args)
                raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args)
                rows = await conn.fetch(statement, *args)
                # The other statements list the same rows, however they find them.
                other = PAGE if statement == SEARCH_PAGE else SEARCH_PAGE
                if filters.search is not None:
                    assert await conn.fetch(other, *args) == rows, name
                if statement in (FILTER_PAGE, AMOUNT_PAGE):
                    assert await conn.fetch(PAGE, *args) == rows, name
                if statement == AMOUNT_PAGE:
                    assert await conn.fetch(FILTER_PAGE, *args) == rows, name
            nodes = list(plan_nodes(json.loads(raw)[0]["Plan"]))
            on_payments = [
                n
                for n in nodes
                if n.get("Relation Name") in ("payment_processes", "payment_search")
            ]
            scans = sorted(
                {
                    f"{n['Node Type']}:{n.get('Index Name', '')}"
                    for n in nodes
                    if "Scan" in n["Node Type"]
                }
            )
            assert not [n for n in on_payments if n["Node Type"] == "Seq Scan"], (name, scans)
            assert any(n.get("Index Name") == index for n in nodes), (name, scans)
            if filters.search is not None and index not in (walk_by_time, walk_search):
                assert statement == SEARCH_PAGE, name
                walked = {
                    n.get("Index Name")
                    for n in nodes
                    if "(id = ANY" not in n.get("Index Cond", "")  # a lookup by id
                }
                assert not walks & walked, (name, scans)
                if {"cancel", "refund"} <= filters.kinds:
                    # Its cancels and refunds are looked up by the matches' ids (migration
                    # 0023), never found by reading every match's row.
                    by_id = {"payment_processes_canceled_id_idx", "refunds_payment_idx"}
                    assert by_id <= {n.get("Index Name") for n in nodes}, (name, scans)
            assert rows, name
            if name == "second page":
                assert rows[0] == first[50]
            report.append(f"{name}: {len(rows)} rows; {', '.join(scans)}")

        args = PaymentQuery().params(mid, "test", None, 51)
        async with conn.transaction():
            await conn.execute(Q["custom_plans"])
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {PAGE}", *args)
        analyzed = json.loads(raw)[0]
        report.append(
            f"default page EXPLAIN ANALYZE: planning {analyzed['Planning Time']:.3f} ms, "
            f"execution {analyzed['Execution Time']:.3f} ms"
        )
        with capsys.disabled():
            print("\n" + "\n".join(report))
    finally:
        await conn.close()
