"""The payments page in a browser: every filter and their combination (the same rows as the
API, after a reload too), a saved view, the CSV export, a refund and its webhook."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from simulator.server import SimulatorHandle
from tests.browser.conftest import Backoffice, log_in
from tests.integration.engine_support import acquirer_config

MID = "shop_a"


async def _scene(bo: Backoffice) -> tuple[str, dict[str, str]]:
    """A merchant with payments of every kind; its key and tids by order id."""
    email = await bo.user("admin@shop-a.example", "admin", MID)
    key = await bo.api_key(MID)
    tids = {}
    for order, name, amount in (
        ("ORD_A1", "Blue mug", 10_000),
        ("ORD_A2", "Red mug", 25_000),
        ("ORD_B3", "Green tea", 5_000),
        ("ORD_B4", "Black tea", 40_000),
        ("ORD_C5", "Teapot", 70_000),
    ):
        tids[order] = await bo.pay(key, MID, order, amount, orderName=name)
    await bo.settle(key, tids["ORD_A1"])
    await bo.settle(key, tids["ORD_A2"], "FAILED")
    await bo.settle(key, tids["ORD_B4"])
    status, _ = await bo.api("POST", f"/api/payments/{tids['ORD_B3']}/cancel", key)
    assert status == 200
    status, _ = await bo.api(
        "POST",
        f"/api/payments/{tids['ORD_B4']}/refunds",
        key,
        json={"amount": 15_000, "reason": "one box broken"},
        headers={"Idempotency-Key": "r-1"},
    )
    assert status == 202
    # Another merchant's payment never shows.
    await bo.repo.merchants.create_merchant("shop_b", "Shop B")
    await bo.pay(await bo.api_key("shop_b"), "shop_b", "ORD_A1", 10_000, orderName="Blue mug")
    return email, tids


async def _api_rows(bo: Backoffice, key: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item the API lists for `query`, all pages."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = query | ({"cursor": cursor} if cursor else {}) | {"limit": 200}
        status, body = await bo.api("GET", f"/api/payments?{urlencode(params, doseq=True)}", key)
        assert status == 200, body
        items += body["items"]
        cursor = body["next"]
        if not cursor:
            return items


def _shown(page: Page) -> list[tuple[str, str]]:
    rows = page.locator("#results tbody tr[data-tid]")
    return [
        (r.get_attribute("data-kind") or "", r.get_attribute("data-tid") or "") for r in rows.all()
    ]


async def test_each_filter_and_their_combination_survive_reload(bo: Backoffice) -> None:
    email, tids = await _scene(bo)
    key = await bo.api_key(MID)
    base = bo.url("").rstrip("/")
    today = datetime.now(ZoneInfo("Asia/Seoul")).date()
    seoul_midnight = datetime.combine(today, datetime.min.time(), ZoneInfo("Asia/Seoul"))
    # (what to do on the page, the same filter as API parameters)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("kind=refund", {"kind": "refund"}),
        ("kind=cancel", {"kind": "cancel"}),
        ("status=SUCCESS", {"status": "SUCCESS"}),
        ("minAmount=20000&maxAmount=45000", {"minAmount": 20000, "maxAmount": 45000}),
        ("q=Blue", {"q": "Blue"}),
        ("q=ORD_B", {"q": "ORD_B"}),
        (
            f"from={today}&to={today}",
            {
                "from": seoul_midnight.isoformat(),
                "to": (seoul_midnight + timedelta(days=1)).isoformat(),
            },
        ),
        (
            f"from={today + timedelta(days=1)}",
            {"from": (seoul_midnight + timedelta(days=1)).isoformat()},
        ),
        (
            "kind=payment&status=SUCCESS&minAmount=20000&q=ORD_B",
            {"kind": "payment", "status": "SUCCESS", "minAmount": 20000, "q": "ORD_B"},
        ),
    ]
    expected = []
    for _, query in cases:
        expected.append([(i["kind"], i["tid"]) for i in await _api_rows(bo, key, query)])
    assert expected[0] == [("refund", tids["ORD_B4"])]
    assert expected[-1] == [("payment", tids["ORD_B4"])]
    assert expected[7] == []

    def steps(page: Page) -> None:
        log_in(page, base, email)
        # Each filter typed into the form (the URL follows), then the page reloaded.
        page.get_by_role("checkbox", name="refund").check()
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(f"{base}/backoffice/payments?kind=refund")
        page.reload()
        expect(page.get_by_role("checkbox", name="refund")).to_be_checked()
        assert _shown(page) == expected[0]
        for (query, _), rows in zip(cases, expected, strict=True):
            page.goto(f"{base}/backoffice/payments?{query}")
            assert _shown(page) == rows, query
            page.reload()
            assert _shown(page) == rows, f"{query} after reload"
        # The combination, built in the form.
        page.goto(f"{base}/backoffice/payments")
        page.get_by_role("checkbox", name="payment").check()
        page.get_by_label("Status").select_option("SUCCESS")
        page.get_by_label("Amount from").fill("20000")
        page.get_by_role("searchbox", name="Search").fill("ORD_B")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("#results tbody tr[data-tid]")).to_have_count(1)
        page.reload()
        assert _shown(page) == expected[-1]
        expect(page.get_by_label("Amount from")).to_have_value("20000")
        expect(page.locator("#range")).to_contain_text("Showing every date")

    await bo.browse(steps, "payments-filtered")


async def test_saved_view_search_and_csv_export_equal_the_api(bo: Backoffice) -> None:
    email, tids = await _scene(bo)
    key = await bo.api_key(MID)
    base = bo.url("").rstrip("/")
    api = await _api_rows(bo, key, {"kind": ["payment", "refund"], "minAmount": 10000})

    def steps(page: Page) -> str:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/payments?kind=payment&kind=refund&minAmount=10000")
        page.get_by_label("Save this view as").fill("Big ones")
        page.get_by_role("button", name="Save", exact=True).click()
        page.goto(f"{base}/backoffice/payments")
        page.get_by_role("link", name="Big ones").click()
        expect(page).to_have_url(
            f"{base}/backoffice/payments?kind=payment&kind=refund&minAmount=10000"
        )
        assert _shown(page) == [(i["kind"], i["tid"]) for i in api]
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        # A pasted tid opens that payment.
        page.goto(f"{base}/backoffice/payments")
        page.get_by_role("searchbox", name="Search").fill(tids["ORD_A2"])
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_role("heading", name=f"Payment {tids['ORD_A2']}")).to_be_visible()
        return text

    text = await bo.browse(steps, "payment-opened-by-search")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [
        {k: v for k, v in r.items() if k != "created_at"}
        | {"at": datetime.fromisoformat(r["created_at"])}
        for r in rows
    ] == [
        {
            "kind": i["kind"],
            "tid": i["tid"],
            "refund_id": i["refundId"] or "",
            "order_id": i["orderId"],
            "order_name": i["orderName"] or "",
            "customer_id": i["customerId"],
            "amount": str(i["amount"]),
            "currency": i["currency"],
            "status": i["status"],
            "at": datetime.fromisoformat(i["createdAt"]),
        }
        for i in api
    ]
    assert len(rows) == 5  # A1, A2, B4 and C5 (10,000 or more) and B4's refund


async def test_refund_from_the_page_and_its_webhook(bo: Backoffice, sim: SimulatorHandle) -> None:
    await acquirer_config(bo.http, sim, success_rate=1.0)
    email = await bo.user("admin@shop-a.example", "admin", MID)
    key = await bo.api_key(MID)
    tid = await bo.pay(key, MID, "ORD_R1", 30_000, orderName="Kettle")
    worker = bo.worker()  # charged at the acquirer (a refund needs a real capture)
    assert (await worker.payments_pass()).settled == 1
    while (await worker.webhooks_pass()).claimed:
        pass
    base = bo.url("").rstrip("/")

    def refund(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/payments/{tid}")
        page.get_by_label("Refund amount").fill("12000")
        page.get_by_label("Reason").fill("Lid was cracked")
        page.get_by_role("button", name="Refund", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("Done.")

    await bo.browse(refund, "refund-requested")
    assert (await worker.refunds_pass()).settled == 1
    while (await worker.webhooks_pass()).claimed:
        pass
    hooks = await sim.wait_for_webhooks(2, path="/api/webhook/pg/DUMMY")
    body = hooks[-1]["body"]
    assert (body["transactionId"], body["status"], body["amount"]) == (tid, "REFUNDED", 12_000)

    def timeline(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/payments/{tid}")
        refund_rows = page.locator("tr.entry-refund")
        expect(refund_rows.first).to_contain_text("Lid was cracked")
        expect(refund_rows.first).to_contain_text(f"user:{email}")
        expect(refund_rows.last).to_contain_text("REFUNDED")
        expect(page.locator("tr.entry-webhook")).to_have_count(2)
        expect(page.get_by_text("₩12,000").first).to_be_visible()

    await bo.browse(timeline, "payment-timeline")
