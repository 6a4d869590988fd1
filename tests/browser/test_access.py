"""Who may see and do what, in a browser: another merchant's payment is 404, a form without
its CSRF token is refused, a viewer reads but cannot act."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Backoffice, log_in


async def test_another_merchants_payment_is_not_found(bo: Backoffice) -> None:
    email_a = await bo.user("admin@shop-a.example", "admin", "shop_a")
    await bo.user("admin@shop-b.example", "admin", "shop_b")
    tid_b = await bo.pay(await bo.api_key("shop_b"), "shop_b", "ORD_B1", 1000)
    live_a = await bo.pay(await bo.api_key("shop_a", "live"), "shop_a", "ORD_L1", 1000)
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        log_in(page, base, email_a)
        for tid in (tid_b, live_a):  # B's payment; A's own but of the other mode
            answer = page.goto(f"{base}/backoffice/payments/{tid}")
            assert answer is not None and answer.status == 404
            expect(page.get_by_role("alert")).to_contain_text("404")
        # Switched to live, A's live payment opens.
        page.goto(f"{base}/backoffice/payments")
        page.get_by_label("Mode").select_option("live")
        page.get_by_role("button", name="Switch").first.click()
        expect(page.locator("#results tbody tr[data-tid]")).to_have_count(1)
        answer = page.goto(f"{base}/backoffice/payments/{live_a}")
        assert answer is not None and answer.status == 200

    await bo.browse(steps, "another-merchant-404")


async def test_a_form_without_its_csrf_token_is_refused(bo: Backoffice) -> None:
    email = await bo.user("admin@shop-a.example", "admin", "shop_a")
    key = await bo.api_key("shop_a")
    tid = await bo.pay(key, "shop_a", "ORD_1", 5000)
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/payments/{tid}")
        form = page.locator("form[action$='/cancel']")
        form.locator("input[name=csrf]").evaluate("input => input.remove()")
        with page.expect_response(lambda r: r.url.endswith("/cancel")) as answer:
            page.get_by_role("button", name="Cancel payment").click()
        assert answer.value.status == 403
        expect(page.get_by_role("alert")).to_contain_text("security token")

    await bo.browse(steps, "csrf-refused")
    assert (await bo.repo.payments.payment_by_tid(tid, "shop_a", "test")).status.value == "PENDING"  # type: ignore[union-attr]


async def test_a_viewer_reads_but_cannot_act(bo: Backoffice) -> None:
    email = await bo.user("viewer@shop-a.example", "viewer", "shop_a")
    key = await bo.api_key("shop_a")
    tid = await bo.pay(key, "shop_a", "ORD_1", 5000)
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        log_in(page, base, email)
        page.goto(f"{base}/backoffice/payments/{tid}")
        expect(page.get_by_text("Your role can only read.")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel payment")).to_have_count(0)
        csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
        answer = page.request.post(f"{base}/backoffice/payments/{tid}/cancel", form={"csrf": csrf})
        assert answer.status == 403

    await bo.browse(steps, "viewer-read-only")
    assert (await bo.repo.payments.payment_by_tid(tid, "shop_a", "test")).status.value == "PENDING"  # type: ignore[union-attr]
