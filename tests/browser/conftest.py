"""Pages in a real browser: Debian's Chromium driven by Playwright.

One browser for the whole run, in a thread of its own (Playwright's sync API), so each test
keeps its app, database and simulator on the test's event loop, serving on a real port while
the browser works: `await browse(steps, "name")` runs `steps(page)` in a fresh browser
context and saves a screenshot of what it checked under tests/browser/screenshots/.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

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
