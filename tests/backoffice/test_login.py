"""Logging in and out of the back office, throttling, cookies, CSRF and security headers."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from engine import recovery
from engine.store.recovery import RecoveryStore
from tests.backoffice.support import PASSWORD, csrf_of, log_in, make_user

MID = "shop_a"


async def test_login_page_is_labelled_and_sets_headers(web: TestClient) -> None:
    resp = await web.get("/backoffice/login")
    html = await resp.text()
    assert resp.status == 200
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert ">Log in</button>" in html
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in resp.headers  # development: no HSTS
    assert "<script>" not in html and "style=" not in html


async def test_login_logout_and_cookie_flags(web: TestClient, pool: asyncpg.Pool) -> None:
    await make_user(pool, "a@shop.example", "admin", MID)
    page = await web.get("/backoffice/login")
    token = csrf_of(await page.text())
    resp = await web.post(
        "/backoffice/login",
        data={"email": "A@Shop.example ", "password": PASSWORD, "csrf": token},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/backoffice/payments"
    cookie = resp.cookies["bo_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/backoffice"
    assert not cookie["secure"]  # Secure only with ENGINE_ENV=production
    stored = await pool.fetchval("SELECT token_hash FROM backoffice_sessions")
    assert cookie.value.encode() not in stored  # only a hash is kept
    home = await web.get("/backoffice/payments")
    assert home.status == 200
    csrf = csrf_of(await home.text())
    out = await web.post("/backoffice/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/backoffice/login"
    again = await web.get("/backoffice/payments", allow_redirects=False)
    assert again.status == 303
    assert again.headers["Location"].startswith("/backoffice/login?next=")


async def test_wrong_password_is_throttled_per_account(web: TestClient, pool: asyncpg.Pool) -> None:
    await make_user(pool, "b@shop.example", "admin", MID)
    page = await web.get("/backoffice/login")
    token = csrf_of(await page.text())
    answers = []
    for _ in range(6):
        resp = await web.post(
            "/backoffice/login",
            data={"email": "b@shop.example", "password": "wrong password!", "csrf": token},
        )
        answers.append(resp.status)
    assert answers == [401] * 5 + [429]
    # Throttled, the right password is not even checked.
    resp = await web.post(
        "/backoffice/login",
        data={"email": "b@shop.example", "password": PASSWORD, "csrf": token},
        allow_redirects=False,
    )
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert "Too many attempts" in await resp.text()


async def test_log_out_everywhere_ends_other_sessions(web: TestClient, pool: asyncpg.Pool) -> None:
    await make_user(pool, "c@shop.example", "admin", MID)
    # Another browser on the same server.
    other = aiohttp.ClientSession(
        base_url=str(web.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    await log_in(other, "c@shop.example")
    csrf = await log_in(web, "c@shop.example")
    assert (await other.get("/backoffice/payments", allow_redirects=False)).status == 200
    resp = await web.post("/backoffice/logout-everywhere", data={"csrf": csrf})
    assert resp.status == 200  # the login page, after the redirect
    assert (await other.get("/backoffice/payments", allow_redirects=False)).status == 303
    await other.close()
    await other.close()


async def test_forms_without_csrf_are_refused(web: TestClient, pool: asyncpg.Pool) -> None:
    await make_user(pool, "d@shop.example", "admin", MID)
    # The login form itself needs its token.
    resp = await web.post(
        "/backoffice/login", data={"email": "d@shop.example", "password": PASSWORD}
    )
    assert resp.status == 403
    csrf = await log_in(web, "d@shop.example")
    for data in ({}, {"csrf": "forged"}, {"csrf": csrf + "x"}):
        resp = await web.post("/backoffice/logout", data=data)
        assert resp.status == 403, data
        assert "security token" in await resp.text()
    assert (await web.get("/backoffice/payments", allow_redirects=False)).status == 200


async def test_a_suspended_merchants_staff_are_logged_out_and_cannot_log_in(
    web: TestClient, pool: asyncpg.Pool
) -> None:
    await make_user(pool, "s@shop.example", "admin", MID)
    await log_in(web, "s@shop.example")
    assert (await web.get("/backoffice/payments", allow_redirects=False)).status == 200
    await recovery.suspend(RecoveryStore(pool), MID, "ops@example", "chargebacks")
    # The open session ends at once, as the merchant's keys do.
    out = await web.get("/backoffice/payments", allow_redirects=False)
    assert out.status == 303 and out.headers["Location"].startswith("/backoffice/login")
    page = await web.get("/backoffice/login")
    resp = await web.post(
        "/backoffice/login",
        data={"email": "s@shop.example", "password": PASSWORD, "csrf": csrf_of(await page.text())},
        allow_redirects=False,
    )
    assert resp.status == 401
    # Resumed, the old session stays ended; a new login works.
    await recovery.suspend(RecoveryStore(pool), MID, "ops@example", "settled", suspended=False)
    assert (await web.get("/backoffice/payments", allow_redirects=False)).status == 303
    await log_in(web, "s@shop.example")
