"""The developers pages in a browser: keys issued, rolled and revoked (then refused by the
API), an endpoint added and tested, and a bulk resend of dead webhooks."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from engine.worker.process import Worker
from simulator.server import SimulatorHandle
from tests.browser.conftest import Backoffice, log_in
from tests.integration.engine_support import merchant_faults, tuned

MID = "shop_a"


async def test_issue_roll_and_revoke_a_key(bo: Backoffice) -> None:
    email = await bo.user("admin@shop-a.example", "admin", MID)
    base = bo.url("").rstrip("/")

    def issue(page: Page) -> str:
        log_in(page, base, email)
        page.get_by_role("link", name="Developers").click()
        page.get_by_label("Name", exact=True).fill("Checkout server")
        page.get_by_role("button", name="Issue").click()
        expect(page.get_by_role("button", name="Copy")).to_be_visible()
        return page.locator("#new-secret").inner_text()

    first = await bo.browse(issue, "key-issued")
    assert (await bo.api("GET", "/api/payments", first))[0] == 200
    prefix = first[: len("sk_test_") + 6]

    def roll(page: Page) -> str:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/developers")
        row = page.locator(f"tr[data-prefix='{prefix}']")
        expect(row).to_contain_text("Checkout server")
        row.get_by_label("Grace").select_option("0")
        row.get_by_role("button", name="Roll").click()
        return page.locator("#new-secret").inner_text()

    second = await bo.browse(roll, "key-rolled")
    assert second != first
    assert (await bo.api("GET", "/api/payments", first))[0] == 401  # no grace: gone at once
    assert (await bo.api("GET", "/api/payments", second))[0] == 200
    prefix2 = second[: len("sk_test_") + 6]

    def revoke(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/developers")
        row = page.locator(f"tr[data-prefix='{prefix2}']")
        expect(row).to_contain_text("Checkout server")  # the name follows the roll
        row.get_by_role("button", name="Revoke").click()
        expect(page.locator(f"tr[data-prefix='{prefix2}']")).to_contain_text("Revoked")

    await bo.browse(revoke, "key-revoked")
    status, body = await bo.api("GET", "/api/payments", second)
    assert status == 401 and body["reason"] == "revoked"


async def test_endpoint_test_event_and_bulk_resend(bo: Backoffice, sim: SimulatorHandle) -> None:
    email = await bo.user("admin@shop-a.example", "admin", MID)
    key = await bo.api_key(MID)
    base = bo.url("").rstrip("/")
    receiver = f"{sim.url}/api/webhook/pg/SHOP_A"

    def add(page: Page) -> str:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/developers")
        page.get_by_label("URL").fill(receiver)
        page.get_by_label("Description").fill("shop receiver")
        page.get_by_role("button", name="Add", exact=True).click()
        return page.locator("#new-secret").inner_text()

    secret = await bo.browse(add, "endpoint-added")
    async with bo.http.post(
        f"{sim.url}/api/webhook/admin/secrets", json={"secrets": [secret]}
    ) as resp:
        assert resp.status == 200

    def send_test(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/developers")
        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_role("status")).to_contain_text("test delivered (200)")

    await bo.browse(send_test, "endpoint-tested")

    # Three payments whose webhooks die (the receiver answers 500, one attempt allowed).
    tids = [await bo.pay(key, MID, f"ORD_{i}", 1000 + i) for i in range(3)]
    for tid in tids:
        await bo.settle(key, tid)
    await merchant_faults(bo.http, sim, fail_next=3, status=500)
    dying = Worker(tuned(bo.settings, webhook_max_attempts=1), bo.repo, bo.http, owner="w1")
    assert (await dying.webhooks_pass()).claimed == 3
    dead = await bo.pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'DEAD'")
    assert dead == 3

    def resend(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/deliveries")
        page.get_by_label("Status").select_option("dead")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator("tr[data-delivery-id]")).to_have_count(3)
        page.get_by_role("button", name="Resend every matching delivery").click()
        expect(page.get_by_role("status")).to_contain_text("resent 3")

    await bo.browse(resend, "deliveries-resent")
    worker = bo.worker()
    while (await worker.webhooks_pass()).claimed:
        pass
    # The test event, three refused attempts, then the three resent and accepted.
    hooks = await sim.wait_for_webhooks(7, path="/api/webhook/pg/SHOP_A")
    resent = [h["body"].get("transactionId") for h in hooks[4:]]
    assert sorted(resent) == sorted(tids) and all(h["status"] == 200 for h in hooks[4:])

    def delivered(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/deliveries?state=delivered")
        expect(page.locator("tr[data-delivery-id]")).to_have_count(3)

    await bo.browse(delivered, "deliveries-delivered")
