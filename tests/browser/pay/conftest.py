"""Pay with the phone, end to end: the gateway, a worker, the acquirer, the demo shop, Chromium.

Everything serves on real ports on the test's event loop: the web app (the gateway), an engine
worker, the simulator as the acquirer, and a second simulator as the merchant's website (the
shop, told where the gateway is). The browser steps run in the browser thread; `sync(coro)`
lets them run a coroutine on the test's loop (look something up, drop a connection) while
the test waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.sync_api import Browser, BrowserContext, Page

from api.app import create_app
from config.settings import Settings
from engine.customers import accounts
from engine.store.repository import Repository
from engine.worker.process import Worker
from simulator import SimulatorSettings, running
from simulator.server import SimulatorHandle
from tests.browser.conftest import SCREENSHOTS, BrowserThread

T = TypeVar("T")
MID = "hamster_shop_mid_001"
EMAIL = "jimin@example.com"
PASSWORD = "correct horse battery staple"
CARDS = {
    "approves": "4242424242424242",
    "declines": "4000000000000002",
    "insufficient_funds": "4000000000009995",
}
PHONE = "Pixel 7"


class Proxy:
    """A TCP relay in front of the gateway whose open connections a test can cut at once:
    what a dropped network does to a page's event stream."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.conns: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.conns |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.conns -= {writer, up_writer}

    def drop(self) -> int:
        """Cut every open connection (both sides); returns how many were open."""
        n = len(self.conns)
        for conn in list(self.conns):
            transport = conn.transport
            transport.abort()
        return n

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()


@dataclass
class Shopfront:
    """The whole scene of one test, and ways to act in it."""

    web: TestServer
    settings: Settings
    pool: asyncpg.Pool
    repo: Repository
    http: aiohttp.ClientSession
    acquirer: SimulatorHandle
    browser: BrowserThread
    loop: asyncio.AbstractEventLoop
    secret_key: str
    publishable_key: str
    shops: list[SimulatorHandle] = field(default_factory=list)
    cleanups: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        """An absolute URL of the gateway's web process."""
        return str(self.web.make_url(path))

    async def shop(self, sdk_base: str = "", session_seconds: int = 180) -> str:
        """Start the demo shop (a simulator of its own) on the gateway; its base URL."""
        settings = SimulatorSettings(
            port=0,
            shop_engine_url=self.url("").rstrip("/"),
            shop_sdk_base=sdk_base,
            shop_secret_key=self.secret_key,
            shop_publishable_key=self.publishable_key,
            shop_session_seconds=session_seconds,
        )
        stack = contextlib.AsyncExitStack()
        handle = await stack.enter_async_context(running(settings))
        self.cleanups.append(stack.aclose)
        return handle.url

    async def proxy(self) -> tuple[Proxy, str]:
        """A cuttable relay to the gateway, and its base URL."""
        relay = Proxy(self.web.port or 0)
        port = await relay.start()
        self.cleanups.append(relay.close)
        return relay, f"http://127.0.0.1:{port}"

    async def customer(self, email: str = EMAIL, card: str = "approves") -> str:
        """A customer of the app with one registered card; returns the email."""
        store = self.repo.customers
        made = await accounts.sign_up(store, email, PASSWORD)
        assert made is not None
        await accounts.register_card(
            store,
            self.http,
            f"{self.acquirer.url}/acquirer",
            made,
            {"number": CARDS[card], "expMonth": 12, "expYear": 2040, "cvc": "123"},
        )
        return email

    def sync(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        """From the browser thread: run `coro` on the test's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def browse(self, steps: Callable[[Browser], T]) -> T:
        """Run `steps(browser)` in the browser thread (it opens the contexts it needs)."""
        runner = self.browser

        def run() -> T:
            assert runner.browser is not None
            return steps(runner.browser)

        return await self.loop.run_in_executor(runner.pool, run)

    def desktop(self, browser: Browser, locale: str = "en-US") -> BrowserContext:
        """A desktop browser: wide screen, a mouse."""
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        return context

    def phone(self, browser: Browser, locale: str = "ko-KR") -> BrowserContext:
        """A phone: a Pixel's screen, touch and user agent."""
        assert self.browser.playwright is not None
        device = self.browser.playwright.devices[PHONE]
        context = browser.new_context(**device, locale=locale)
        context.set_default_timeout(15_000)
        return context

    async def session(self, session_id: str) -> dict[str, Any]:
        """The session as the merchant's server sees it (secret key)."""
        headers = {"Authorization": f"Bearer {self.secret_key}"}
        async with self.http.get(
            self.url(f"/api/checkout/sessions/{session_id}"), headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def atom_ledger(self) -> list[dict[str, Any]]:
        """Every charge Atom made (money actually taken)."""
        async with self.http.get(f"{self.acquirer.url}/atom/ledger") as resp:
            assert resp.status == 200
            return list((await resp.json())["charges"])

    async def ledger(self) -> list[dict[str, Any]]:
        """Every charge the acquirer made (money actually taken)."""
        async with self.http.get(f"{self.acquirer.url}/acquirer/charges") as resp:
            assert resp.status == 200
            body = await resp.json()
            return list(body["charges"])


def shot(page: Page, name: str) -> None:
    """Keep a screenshot of what the test saw (git-ignored folder)."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, email: str = EMAIL, password: str = PASSWORD) -> None:
    """The app's login form, as a person fills it (the page it was on asks for it)."""
    page.get_by_label("Email").or_(page.get_by_label("이메일")).fill(email)
    page.get_by_label("Password").or_(page.get_by_label("비밀번호")).fill(password)
    page.get_by_role("button", name="Log in").or_(page.get_by_role("button", name="로그인")).click()
    page.wait_for_load_state()


@pytest.fixture
async def scene(
    aiohttp_server,  # type: ignore[no-untyped-def]
    settings: Settings,
    pool: asyncpg.Pool,
    sim: SimulatorHandle,
    browser_thread: BrowserThread,
) -> AsyncIterator[Shopfront]:
    """The gateway and a worker on this test's database, with the demo merchant's two keys."""
    repo = Repository(pool)
    await repo.merchants.create_merchant(MID, "Hamster Goods")
    secret = (await repo.merchants.issue_key(MID, "test", settings.api_key_secret)).key
    publishable = (
        await repo.merchants.issue_key(MID, "test", settings.api_key_secret, kind="publishable")
    ).key
    web = await aiohttp_server(create_app(settings))
    # The worker sends Atom's hosted payments to the simulator's Atom, and tells it to send
    # the customer and its callbacks back to this gateway.
    public = str(web.make_url("/")).rstrip("/")
    worker_settings = Settings.model_validate(
        {**settings.model_dump(), "atom_url": f"{sim.url}/atom", "public_url": public}
    )
    async with aiohttp.ClientSession() as http:
        worker = Worker(worker_settings, repo, http, owner="browser-worker")
        task = asyncio.create_task(worker.serve(settings.database_url or ""))
        front = Shopfront(
            web,
            settings,
            pool,
            repo,
            http,
            sim,
            browser_thread,
            asyncio.get_running_loop(),
            secret,
            publishable,
        )
        try:
            yield front
        finally:
            for cleanup in reversed(front.cleanups):
                await cleanup()
            worker.stop()
            await task
