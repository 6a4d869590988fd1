"""The back office in a real browser: Debian's Chromium driven by Playwright.

One browser for the whole run, in a thread of its own (Playwright's sync API), so each test
keeps its app, database and simulator on the test's event loop, serving on a real port while
the browser works: `await browse(steps, "name")` runs `steps(page)` in a fresh browser
context and saves a screenshot of what it checked under tests/browser/screenshots/.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from api.app import create_app
from config.settings import Settings
from engine.store.repository import Repository
from engine.worker.process import Worker
from tests.backoffice.support import PASSWORD, fast, make_user

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
T = TypeVar("T")


class BrowserThread:
    """One Chromium, used from one thread only (what Playwright's sync API requires)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None

    def _start(self) -> None:
        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs it (apt-get)")
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)

    def _stop(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.playwright is not None:
            self.playwright.stop()

    def _run(self, steps: Callable[[Page], T], shot: str, locale: str) -> T:
        assert self.browser is not None
        context = self.browser.new_context(
            locale=locale, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            result = steps(page)
            page.screenshot(path=str(SCREENSHOTS / f"{shot}.png"), full_page=True)
            return result
        except Exception:
            page.screenshot(path=str(SCREENSHOTS / f"{shot}-FAILED.png"), full_page=True)
            raise
        finally:
            context.close()

    async def run(self, steps: Callable[[Page], T], shot: str, locale: str = "en-US") -> T:
        """Run `steps(page)` in a fresh context (no cookies); screenshot named `shot`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._run, steps, shot, locale)


@pytest.fixture(scope="session")
def browser_thread() -> Iterator[BrowserThread]:
    """The run's one browser."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    runner = BrowserThread()
    runner.pool.submit(runner._start).result()
    yield runner
    runner.pool.submit(runner._stop).result()
    runner.pool.shutdown()


@dataclass
class Backoffice:
    """The app on a real port, its database, and ways to set the scene."""

    server: TestServer
    settings: Settings
    pool: asyncpg.Pool
    repo: Repository
    http: aiohttp.ClientSession
    browser: BrowserThread

    def url(self, path: str) -> str:
        """An absolute URL of the app."""
        return str(self.server.make_url(path))

    async def browse(self, steps: Callable[[Page], T], shot: str, locale: str = "en-US") -> T:
        """Run browser steps against this app."""
        return await self.browser.run(steps, shot, locale)

    async def user(self, email: str, role: str, mid: str | None) -> str:
        """A user with the shared test password; returns the email."""
        await make_user(self.pool, email, role, mid)
        return email

    async def api_key(self, mid: str, mode: str = "test") -> str:
        """A fresh API key of the merchant (which must exist)."""
        return (await self.repo.merchants.issue_key(mid, mode, self.settings.api_key_secret)).key

    async def api(self, method: str, path: str, key: str, **kw: Any) -> tuple[int, Any]:
        """Call the merchant API with `key`; (status, JSON body)."""
        headers = {"Authorization": f"Bearer {key}"} | kw.pop("headers", {})
        async with self.http.request(method, self.url(path), headers=headers, **kw) as resp:
            body = await resp.json() if resp.content_type.endswith("json") else await resp.text()
            return resp.status, body

    async def pay(self, key: str, mid: str, order_id: str, amount: int, **extra: Any) -> str:
        """A payment of merchant `mid` through the API; its tid."""
        body = {"userPublicId": "USR_1", "orderId": order_id, "amount": amount} | extra
        body.setdefault("echo", {"mid": mid})
        status, answer = await self.api("POST", "/api/payments", key, json=body)
        assert status == 202, answer
        return str(answer["transactionId"])

    async def settle(self, key: str, tid: str, outcome: str = "SUCCESS") -> None:
        """Settle a test payment by hand (the manual trigger)."""
        status, answer = await self.api(
            "POST", f"/api/payments/{tid}/webhook-trigger?status={outcome}", key
        )
        assert status == 202, answer

    def worker(self) -> Worker:
        """An engine worker on this database (passes run by hand)."""
        return Worker(self.settings, self.repo, self.http, owner="browser-test-worker")


def log_in(page: Page, base: str, email: str, password: str = PASSWORD) -> None:
    """The login form, as a person fills it."""
    page.goto(f"{base}/backoffice/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


@pytest.fixture
async def bo(
    aiohttp_server,  # type: ignore[no-untyped-def]
    settings: Settings,
    pool: asyncpg.Pool,
    browser_thread: BrowserThread,
) -> AsyncIterator[Backoffice]:
    """The back office of this test."""
    tuned = fast(settings)
    server = await aiohttp_server(create_app(tuned))
    async with aiohttp.ClientSession() as http:
        yield Backoffice(server, tuned, pool, Repository(pool), http, browser_thread)
