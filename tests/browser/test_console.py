"""The operators' console and the overview in a browser: an UNRESOLVED payment resolved by
hand shows in the audit log; a suspended merchant's key gets 401; the overview's charts."""

from __future__ import annotations

import asyncpg
from playwright.sync_api import Page, expect

from tests.browser.conftest import Backoffice, log_in

MID = "shop_a"


async def _unresolved(pool: asyncpg.Pool, tid: str) -> None:
    """The payment's outcome is unknown and inquiries gave up: it waits for a person."""
    await pool.execute(
        "UPDATE payment_processes SET status = 'UNRESOLVED', outcome_unknown_since = now(),"
        " unresolved_reason = 'OUTCOME_UNKNOWN', next_attempt_at = 'infinity' WHERE tid = $1",
        tid,
    )


async def test_operator_resolves_an_unresolved_payment_and_the_audit_log_shows_it(
    bo: Backoffice,
) -> None:
    operator = await bo.user("ops@hamster.example", "operator", None)
    await bo.user("admin@shop-a.example", "admin", MID)
    key = await bo.api_key(MID)
    tid = await bo.pay(key, MID, "ORD_U1", 42_000, orderName="Lamp")
    await _unresolved(bo.pool, tid)
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        log_in(page, base, operator)
        expect(page).to_have_url(f"{base}/backoffice/console/recovery")
        row = page.locator(f"tr[data-tid='{tid}']")
        expect(row).to_contain_text("OUTCOME_UNKNOWN")
        row.get_by_label("Outcome").select_option("SUCCESS")
        row.get_by_label("Reason").fill("Acquirer confirmed the charge by phone")
        row.get_by_role("button", name=f"Resolve {tid}").click()
        expect(page.get_by_role("status")).to_contain_text(f"{tid} resolved SUCCESS")
        expect(page.locator(f"tr[data-tid='{tid}']")).to_have_count(0)
        page.get_by_role("link", name="Audit log").click()
        entry = page.locator("tbody tr").first
        expect(entry).to_contain_text(f"payment:{tid}")
        expect(entry).to_contain_text("Acquirer confirmed the charge by phone")
        expect(entry).to_contain_text(f"operator:{operator}")

    await bo.browse(steps, "console-audit-log")
    status, body = await bo.api("GET", f"/api/payments/{tid}", key)
    assert status == 200 and body["status"] == "SUCCESS"
    queued = await bo.pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries d JOIN payment_processes p"
        " ON p.id = d.payment_id WHERE p.tid = $1",
        tid,
    )
    assert queued == 1  # its webhook, like any settle


async def test_operator_suspends_a_merchant_and_its_key_is_refused(bo: Backoffice) -> None:
    operator = await bo.user("ops@hamster.example", "operator", None)
    await bo.user("admin@shop-a.example", "admin", MID)
    key = await bo.api_key(MID)
    assert (await bo.api("GET", "/api/payments", key))[0] == 200
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> str:
        log_in(page, base, operator)
        page.get_by_role("link", name="Merchants").click()
        row = page.locator(f"tr[data-mid='{MID}']")
        row.get_by_label("Reason").fill("chargebacks under review")
        row.get_by_role("button", name=f"Suspend {MID}").click()
        expect(page.locator(f"tr[data-mid='{MID}']")).to_contain_text("Suspended")
        page.get_by_label("mid").fill("shop_new")
        page.get_by_label("Name", exact=True).fill("New shop")
        page.get_by_role("button", name="Add", exact=True).click()
        return page.locator("#new-secret").inner_text()

    new_key = await bo.browse(steps, "console-merchants")
    assert (await bo.api("GET", "/api/payments", key))[0] == 401
    assert (await bo.api("GET", "/api/payments", new_key))[0] == 200


async def test_overview_charts(bo: Backoffice) -> None:
    email = await bo.user("admin@shop-a.example", "admin", MID)
    key = await bo.api_key(MID)
    for i in range(4):
        tid = await bo.pay(key, MID, f"ORD_O{i}", 10_000 * (i + 1))
        await bo.settle(key, tid, "SUCCESS" if i < 3 else "FAILED")
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        log_in(page, base, email)
        page.get_by_role("link", name="Overview").click()
        expect(page.locator("figure.chart svg")).to_have_count(5)
        expect(page.get_by_text("₩60,000")).to_be_visible()  # what succeeded today
        page.get_by_role("link", name="7 days").click()
        expect(page.locator("figure.chart svg")).to_have_count(5)
        failures = page.locator("figure.chart").nth(4)
        expect(failures).to_contain_text("Failure reasons")
        expect(failures).to_contain_text("MANUAL_TRIGGER")  # the one FAILED, by hand

    await bo.browse(steps, "overview")
