"""Run the simulator as a real in-process HTTP server, for other test suites."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.app import create_app
from simulator.merchant import MERCHANT_STATE
from simulator.settings import SimulatorSettings


@dataclass(frozen=True)
class SimulatorHandle:
    """A running simulator: its base URL, bound port and app (for direct state access)."""

    app: web.Application
    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        return f"http://{self.host}:{self.port}"

    async def wait_for_webhooks(
        self, count: int, path: str | None = None, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until `count` webhooks (on `path`, if given) arrived; TimeoutError otherwise."""
        received = self.app[MERCHANT_STATE].received
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matching = [w for w in received if path is None or w["path"] == path]
            if len(matching) >= count:
                return matching
            if loop.time() >= deadline:
                raise TimeoutError(f"{len(matching)}/{count} webhooks after {timeout}s")
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(settings: SimulatorSettings) -> AsyncIterator[SimulatorHandle]:
    """Serve a fresh simulator on 127.0.0.1:settings.port (0 = any free port) while open."""
    # Always loopback: this helper is for in-process tests, whatever SIM_HOST says.
    host = "127.0.0.1"
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, settings.port)
        await site.start()
        port = int(runner.addresses[0][1])
        yield SimulatorHandle(app=app, host=host, port=port)
    finally:
        await runner.cleanup()
