"""Helpers of the back office's tests (in-process and in the browser): users, logging in."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from config.settings import Settings
from engine import passwords
from engine.accounts import users
from engine.store.accounts import AccountStore, User
from engine.store.repository import Repository
from tests.integration.engine_support import tuned

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def fast(settings: Settings, **changes: Any) -> Settings:
    """The test settings with the cheap password profile (and any other change)."""
    return tuned(settings, backoffice_password_profile="fast", **changes)


async def make_user(
    pool: asyncpg.Pool, email: str, role: str, mid: str | None, *, merchant_name: str = "Shop"
) -> User:
    """A user (and its merchant, made if missing) with PASSWORD."""
    repo = Repository(pool)
    if mid is not None and await repo.merchants.merchant(mid) is None:
        await repo.merchants.create_merchant(mid, merchant_name)
    return await users.create(
        AccountStore(pool),
        repo,
        passwords.hasher("fast"),
        email=email,
        role=role,
        mid=mid,
        password=PASSWORD,
    )


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def log_in(
    client: TestClient | aiohttp.ClientSession, email: str, password: str = PASSWORD
) -> str:
    """Log `client` in through the form; returns the session's CSRF token."""
    page = await client.get("/backoffice/login")
    token = csrf_of(await page.text())
    resp = await client.post(
        "/backoffice/login",
        data={"email": email, "password": password, "csrf": token},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    home = await client.get(resp.headers["Location"])
    assert home.status == 200, await home.text()
    return csrf_of(await home.text())
