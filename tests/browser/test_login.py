"""Logging in and out in a browser; a wrong password until throttled."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import Backoffice, log_in

MID = "shop_a"


async def test_login_logout_and_throttle(bo: Backoffice) -> None:
    email = await bo.user("admin@shop-a.example", "admin", MID)
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        log_in(page, base, email)
        expect(page).to_have_url(f"{base}/backoffice/payments")
        expect(page.get_by_role("heading", name="Payments")).to_be_visible()
        page.get_by_role("button", name="Log out", exact=True).click()
        expect(page).to_have_url(f"{base}/backoffice/login")
        page.goto(f"{base}/backoffice/payments")
        expect(page).to_have_url(f"{base}/backoffice/login?next=/backoffice/payments")
        for _ in range(5):
            log_in(page, base, email, "not the password")
            expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
        log_in(page, base, email)  # the right one, too late
        expect(page.get_by_role("alert")).to_contain_text("Too many attempts")

    await bo.browse(steps, "login-throttled")


async def test_login_by_keyboard_alone(bo: Backoffice) -> None:
    email = await bo.user("admin@shop-a.example", "admin", MID)
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        page.goto(f"{base}/backoffice/login")
        expect(page.get_by_label("Email")).to_be_focused()  # where typing starts
        page.keyboard.type(email)
        page.keyboard.press("Tab")
        expect(page.get_by_label("Password")).to_be_focused()
        page.keyboard.type("correct horse battery")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Log in")).to_be_focused()
        outline = page.get_by_role("button", name="Log in").evaluate(
            "b => getComputedStyle(b).outlineStyle"
        )
        assert outline == "solid"  # focus is visible
        page.keyboard.press("Enter")
        expect(page).to_have_url(f"{base}/backoffice/payments")
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("Tab")  # the first stop on every page skips the header
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    await bo.browse(steps, "login-keyboard")


async def test_login_page_in_korean(bo: Backoffice) -> None:
    base = bo.url("").rstrip("/")

    def steps(page: Page) -> None:
        page.goto(f"{base}/backoffice/login")
        expect(page.get_by_role("heading", name="로그인")).to_be_visible()
        page.get_by_label("언어").select_option("en")
        page.get_by_role("button", name="전환").click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    await bo.browse(steps, "login-korean", locale="ko-KR")
