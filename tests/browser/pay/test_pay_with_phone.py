"""Pay with the phone in Chromium: the shop on a desktop, the customer's app on a phone.

The shop records every SDK event in `window.shopEvents`; the tests read them, the pages, the
gateway (with the merchant's secret key) and the acquirer's ledger (money actually taken).
"""

from __future__ import annotations

import io
import re
from typing import Any

import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect

from tests.browser.pay.conftest import Shopfront, log_in, shot
from tests.waiting import wait_until

PAID = re.compile(r"^paid \(")


def open_shop(context: BrowserContext, shop: str, name: str = "") -> Page:
    """The shop's product page, Pay pressed: the order's page with the SDK mounted."""
    page = context.new_page()
    page.goto(f"{shop}/shop")
    if name:
        shot(page, name)
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(re.compile(r"/shop/orders/shop-"))
    return page


def read_qr(page: Page) -> str:
    """Read the QR code on the page as a camera would: from the pixels shown."""
    image = page.locator("#checkout img")
    expect(image).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#checkout').shadowRoot.querySelector('img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    png = image.screenshot()
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    assert len(found) == 1, found
    return str(found[0].text)


def events(page: Page, name: str) -> list[dict[str, Any]]:
    """The SDK events of one kind the shop's page heard, in order."""
    return list(
        page.evaluate("n => window.shopEvents.filter(e => e.name === n).map(e => e.detail)", name)
    )


def wait_event(page: Page, name: str) -> dict[str, Any]:
    """Wait for the first event of a kind; its payload."""
    page.wait_for_function("n => window.shopEvents.some(e => e.name === n)", arg=name)
    return events(page, name)[0]


def wait_state(page: Page, state: str) -> None:
    """Wait until the mounted checkout says it is in `state` (data-hamster-state)."""
    expect(page.locator("#checkout")).to_have_attribute("data-hamster-state", state)


def open_on_phone(context: BrowserContext, link: str) -> Page:
    """The phone opens the payment link; signs in when asked; the payment page."""
    page = context.new_page()
    page.goto(link)
    if page.locator("input[type=password]").count():
        log_in(page)
    expect(page.locator("#pay")).to_be_visible()
    return page


def session_id_of(link: str) -> str:
    match = re.search(r"/app/pay/(cs_[0-9A-Za-z]+)$", link)
    assert match, link
    return match.group(1)


async def test_qr_read_and_confirmed_on_the_phone_pays_the_shop(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer()

    def steps(browser: Browser) -> tuple[str, dict[str, Any]]:
        desk, phone = scene.desktop(browser), scene.phone(browser)
        page = open_shop(desk, shop, "shop")
        link = read_qr(page)
        assert link.startswith(scene.url("/app/pay/cs_")), link
        # The amount, the merchant's name and a countdown beside the QR.
        widget = page.locator("#checkout")
        expect(widget).to_contain_text("Hamster Goods")
        expect(widget).to_contain_text("₩10,000")
        expect(widget).to_contain_text(re.compile(r"Expires in [0-3]:[0-5]\d"))
        shot(page, "shop-qr")
        app = open_on_phone(phone, link)
        expect(app.locator("#pay")).to_contain_text("Hamster Goods")
        expect(app.locator("#amount")).to_have_text("₩10,000")
        expect(app.locator("#pay")).to_contain_text("Hamster wheel, 20 cm")
        expect(app.locator("#countdown")).to_have_text(re.compile(r"^[0-3]:[0-5]\d$"))
        wait_state(page, "scanned")  # the shop heard that the phone opened it
        shot(app, "phone-confirm")
        app.get_by_role("button", name="확인").click()
        expect(app.locator("#result")).to_have_text("결제 완료")
        shot(app, "phone-paid")
        success = wait_event(page, "success")
        expect(page.locator("#result")).to_have_text(PAID)  # checked by the shop's server
        shot(page, "shop-paid")
        assert len(events(page, "success")) == 1
        assert events(page, "failure") == [] and events(page, "error") == []
        desk.close()
        phone.close()
        return link, success

    link, success = await scene.browse(steps)
    session = await scene.session(session_id_of(link))
    assert session["status"] == "confirmed"
    assert success["tid"] == session["paymentTid"]
    assert success["status"] == "SUCCESS"
    assert success["amount"] == 10_000 and success["currency"] == "KRW"
    assert success["approvalNo"]
    charges = await scene.ledger()
    assert len(charges) == 1 and charges[0]["amount"] == 10_000


async def test_a_declined_card_is_a_failure_with_its_reason(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer(card="declines")

    def steps(browser: Browser) -> dict[str, Any]:
        desk, phone = scene.desktop(browser), scene.phone(browser, locale="en-US")
        page = open_shop(desk, shop)
        app = open_on_phone(phone, read_qr(page))
        app.get_by_role("button", name="Confirm").click()
        expect(app.locator("#result")).to_contain_text("Payment failed")
        failure = wait_event(page, "failure")
        expect(page.locator("#result")).to_have_text(re.compile("not paid"))
        shot(page, "shop-declined")
        assert events(page, "success") == []
        desk.close()
        phone.close()
        return failure

    failure = await scene.browse(steps)
    assert failure["status"] == "FAILED"
    assert failure["code"] == "card_declined"
    assert failure["failureReason"].lower() == "card_declined"
    assert failure["tid"]
    assert await scene.ledger() == []


async def test_cancel_on_the_phone_charges_nothing(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer()

    def steps(browser: Browser) -> tuple[str, dict[str, Any]]:
        desk, phone = scene.desktop(browser), scene.phone(browser)
        page = open_shop(desk, shop)
        link = read_qr(page)
        app = open_on_phone(phone, link)
        app.get_by_role("button", name="취소").click()
        expect(app.locator("#result")).to_have_text("취소됨")
        failure = wait_event(page, "failure")
        expect(page.locator("#checkout")).to_contain_text("Canceled on the phone")
        shot(page, "shop-canceled")
        desk.close()
        phone.close()
        return link, failure

    link, failure = await scene.browse(steps)
    assert failure["code"] == "canceled_by_customer"
    assert failure["payment"] is None
    session = await scene.session(session_id_of(link))
    assert session["status"] == "canceled" and session["paymentTid"] is None
    assert await scene.ledger() == []


async def test_expiry_ends_the_session_and_a_reload_says_session_expired(
    scene: Shopfront,
) -> None:
    shop = await scene.shop(session_seconds=30)

    def steps(browser: Browser) -> tuple[dict[str, Any], dict[str, Any]]:
        desk = scene.desktop(browser)
        page = open_shop(desk, shop)
        read_qr(page)
        page.wait_for_function(
            "() => window.shopEvents.some(e => e.name === 'failure')", timeout=60_000
        )
        failure = events(page, "failure")[0]
        shot(page, "shop-expired")
        page.reload()
        error = wait_event(page, "error")
        expect(page.locator("#checkout")).to_contain_text("expired")
        desk.close()
        return failure, error

    failure, error = await scene.browse(steps)
    assert failure["code"] == "expired" and failure["payment"] is None
    assert error["code"] == "session_expired"


async def test_key_errors_reach_error_handlers_and_keys_are_not_leaked(
    scene: Shopfront,
) -> None:
    shop = await scene.shop()
    unknown = "pk_test_" + "Zz9" * 14 + "WXYZ"[:1]  # well formed, never issued
    assert len(unknown) == len("pk_test_") + 43

    def steps(browser: Browser) -> dict[str, dict[str, Any]]:
        desk = scene.desktop(browser)
        order = open_shop(desk, shop).url
        seen: dict[str, dict[str, Any]] = {}
        for name, key in (
            ("invalid_publishable_key", "pk_test_short"),
            ("secret_key_in_browser", scene.secret_key),
            ("authentication_error", unknown),
        ):
            page = desk.new_page()  # a page of its own: only its requests are seen
            sent: list[Request] = []
            page.on("request", lambda request, sent=sent: sent.append(request))
            page.goto(f"{order}?pk={key}")
            seen[name] = wait_event(page, "error")
            wait_state(page, "error")
            gateway = [r for r in sent if r.url.startswith(scene.url("/api/"))]
            if name == "authentication_error":
                assert gateway, "a well-formed key is checked by the gateway"
            else:
                assert gateway == [], [r.url for r in gateway]
            assert key not in page.locator("#checkout").inner_text()
            shot(page, f"shop-{name}")
        desk.close()
        return seen

    seen = await scene.browse(steps)
    for code, error in seen.items():
        assert error["code"] == code
        assert error["message"]
    assert "…" + unknown[-4:] in seen["authentication_error"]["message"]
    assert unknown[:-4] not in seen["authentication_error"]["message"]


async def test_a_dropped_stream_reconnects_and_success_fires_once(scene: Shopfront) -> None:
    proxy, via = await scene.proxy()
    shop = await scene.shop(sdk_base=via)
    await scene.customer()

    def steps(browser: Browser) -> None:
        desk, phone = scene.desktop(browser), scene.phone(browser)
        streams: list[Request] = []
        desk.on("request", lambda r: streams.append(r) if "/events?" in r.url else None)
        page = open_shop(desk, shop)
        app = open_on_phone(phone, read_qr(page))
        wait_state(page, "scanned")  # one `changed` came over the stream: it has an id
        assert scene.sync(_drop(proxy)) > 0
        app.get_by_role("button", name="확인").click()
        wait_event(page, "success")
        wait_state(page, "success")
        expect(page.locator("#result")).to_have_text(PAID)
        # Dropped once more after the end: nothing listens any more, nothing fires again.
        scene.sync(_drop(proxy))
        assert len(events(page, "success")) == 1
        assert events(page, "failure") == []
        # The browser came back on its own, saying which event it had last.
        assert len(streams) >= 2, [r.url for r in streams]
        assert any("last-event-id" in r.all_headers() for r in streams[1:]), [
            r.all_headers() for r in streams
        ]
        desk.close()
        phone.close()

    await scene.browse(steps)
    assert len(await scene.ledger()) == 1


async def _drop(proxy: Any) -> int:
    return int(proxy.drop())


async def test_without_any_event_stream_the_sdk_polls_to_the_outcome(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer()

    def steps(browser: Browser) -> int:
        desk, phone = scene.desktop(browser), scene.phone(browser)
        desk.route(re.compile(r"/events\?"), lambda route: route.abort())
        page = open_shop(desk, shop)
        app = open_on_phone(phone, read_qr(page))
        app.get_by_role("button", name="확인").click()
        wait_event(page, "success")
        count = len(events(page, "success"))
        desk.close()
        phone.close()
        return count

    assert await scene.browse(steps) == 1


async def test_a_page_reloaded_while_waiting_resumes_and_gets_the_outcome(
    scene: Shopfront,
) -> None:
    shop = await scene.shop()
    await scene.customer()

    def steps(browser: Browser) -> None:
        desk, phone = scene.desktop(browser), scene.phone(browser)
        page = open_shop(desk, shop)
        link = read_qr(page)
        app = open_on_phone(phone, link)
        wait_state(page, "scanned")
        page.reload()
        wait_state(page, "scanned")  # the same session, resumed
        assert read_qr(page) == link
        app.get_by_role("button", name="확인").click()
        wait_event(page, "success")
        expect(page.locator("#result")).to_have_text(PAID)
        assert len(events(page, "success")) == 1
        desk.close()
        phone.close()

    await scene.browse(steps)


async def test_two_phones_confirming_at_once_make_one_payment(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer()

    def steps(browser: Browser) -> str:
        desk = scene.desktop(browser)
        one, two = scene.phone(browser), scene.phone(browser)
        page = open_shop(desk, shop)
        link = read_qr(page)
        first, second = open_on_phone(one, link), open_on_phone(two, link)
        # Both forms go at once, without waiting for either answer.
        for app in (first, second):
            app.evaluate("() => document.querySelector('#confirm').form.requestSubmit()")
        for app in (first, second):
            app.wait_for_load_state()
        wait_event(page, "success")
        expect(page.locator("#result")).to_have_text(PAID)
        assert len(events(page, "success")) == 1
        shot(second, "phone-second-confirm")
        desk.close()
        one.close()
        two.close()
        return link

    link = await scene.browse(steps)
    session = await scene.session(session_id_of(link))
    charges = await scene.ledger()
    assert len(charges) == 1
    async with scene.pool.acquire() as conn:
        count = await conn.fetchval("SELECT count(*) FROM payment_processes")
    assert count == 1
    assert session["paymentTid"]


async def test_a_phone_sized_shop_page_opens_the_app_by_deep_link(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer()

    def steps(browser: Browser) -> None:
        phone = scene.phone(browser)
        page = open_shop(phone, shop, "phone-shop")
        # No QR on a phone: the SDK opens the app's payment page for this session.
        page.wait_for_url(re.compile(r"/app/"))
        assert page.url.startswith(scene.url("/app/"))
        if page.locator("input[type=password]").count():
            log_in(page)
        expect(page.locator("#pay")).to_contain_text("Hamster Goods")
        page.get_by_role("button", name="확인").click()
        expect(page.locator("#result")).to_have_text("결제 완료")
        page.get_by_role("link", name="가게로 돌아가기").click()
        page.wait_for_url(re.compile(r"/shop/orders/"))
        wait_event(page, "success")
        expect(page.locator("#result")).to_have_text(PAID)
        shot(page, "phone-shop-paid")
        phone.close()

    await scene.browse(steps)


async def test_the_usage_history_shows_the_payment_and_its_refund(scene: Shopfront) -> None:
    shop = await scene.shop()
    await scene.customer()

    def pay(browser: Browser) -> str:
        desk, phone = scene.desktop(browser), scene.phone(browser)
        page = open_shop(desk, shop)
        app = open_on_phone(phone, read_qr(page))
        app.get_by_role("button", name="확인").click()
        tid = str(wait_event(page, "success")["tid"])
        desk.close()
        phone.close()
        return tid

    tid = await scene.browse(pay)
    headers = {"Authorization": f"Bearer {scene.secret_key}"}
    async with scene.http.post(
        scene.url(f"/api/payments/{tid}/refunds"),
        json={"amount": 4_000, "reason": "one wheel too many"},
        headers=headers | {"Idempotency-Key": "r-1"},
    ) as resp:
        assert resp.status == 202, await resp.text()
        refund_id = (await resp.json())["refundId"]

    async def refunded() -> bool:
        async with scene.http.get(scene.url(f"/api/refunds/{refund_id}"), headers=headers) as r:
            return bool((await r.json())["status"] == "REFUNDED")

    await wait_until(refunded, what="the refund settled", timeout=15)

    def history(browser: Browser) -> None:
        phone = scene.phone(browser)
        page = phone.new_page()
        page.goto(scene.url("/app/history"))
        log_in(page)
        page.goto(scene.url("/app/history"))
        item = page.locator(f"[data-tid='{tid}']")
        expect(item).to_contain_text("Hamster Goods")
        expect(item).to_contain_text("₩10,000")
        expect(item.locator(".refund")).to_contain_text("₩4,000")
        expect(item.locator(".refund .status-REFUNDED")).to_be_visible()
        shot(page, "phone-history")
        phone.close()

    await scene.browse(history)
