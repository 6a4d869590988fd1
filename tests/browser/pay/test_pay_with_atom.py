"""Pay through Atom's hosted page in Chromium: the shop's page, Atom's page, our completion
page, and back to the shop, which hears the committed outcome from the SDK."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.browser.pay.conftest import Shopfront, shot
from tests.browser.pay.test_pay_with_phone import wait_event


def to_atom(page: Page, shop: str) -> None:
    """The shop's Pay with Atom, then the SDK's button: the browser is on Atom's page."""
    page.goto(f"{shop}/shop")
    page.get_by_role("button", name="Pay with Atom").click()
    page.wait_for_url(re.compile(r"/shop/orders/shop-"))
    page.locator("#checkout").get_by_role("button", name="Pay with Atom").click()
    page.wait_for_url(re.compile(r"/atom/pay/AT"))
    expect(page.locator("[data-amount]")).to_have_text("10,000 KRW")


async def test_approved_on_atoms_page_the_shop_hears_success(scene: Shopfront) -> None:
    shop = await scene.shop()

    def steps(browser: Browser) -> tuple[str, dict[str, object]]:
        page = scene.desktop(browser).new_page()
        to_atom(page, shop)
        shot(page, "atom-page")
        page.get_by_role("button", name="Approve").click()
        page.wait_for_url(re.compile(r"/app/return/test/"))
        expect(page.locator("#result")).to_have_text("Paid")
        shot(page, "atom-return")
        page.get_by_role("link", name="Back to the shop").click()
        page.wait_for_url(re.compile(r"/shop/orders/shop-"))
        paid = wait_event(page, "success")
        expect(page.locator("#result")).to_have_text(re.compile(r"^paid \("))
        return page.url, paid

    _, paid = await scene.browse(steps)
    tid = str(paid["tid"])
    assert paid["status"] == "SUCCESS" and paid["approvalNo"]
    row = await scene.pool.fetchrow("SELECT * FROM payment_processes WHERE tid = $1", tid)
    assert row["status"] == "SUCCESS" and row["atom_txn_id"] == paid["approvalNo"]
    assert [c["merchTxnId"] for c in await scene.atom_ledger()] == [tid]
    webhooks = await scene.pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE payment_id = $1", row["id"]
    )
    assert webhooks == 1


async def test_declined_on_atoms_page_the_shop_hears_failure(scene: Shopfront) -> None:
    shop = await scene.shop()

    def steps(browser: Browser) -> dict[str, object]:
        page = scene.desktop(browser).new_page()
        to_atom(page, shop)
        page.get_by_role("button", name="Decline").click()
        page.wait_for_url(re.compile(r"/app/return/test/"))
        expect(page.locator("#result")).to_contain_text("Payment failed")
        page.get_by_role("link", name="Back to the shop").click()
        return wait_event(page, "failure")

    failed = await scene.browse(steps)
    assert failed["code"] == "declined_by_customer" and failed["status"] == "FAILED"
    assert await scene.atom_ledger() == []
