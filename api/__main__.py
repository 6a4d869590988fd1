"""`python -m api`: the `web` Procfile process (the intake on port 8083)."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from api import server
from api.app import create_app
from api.ops import observability
from config import settings as config_settings
from engine import logs
from engine import loop as event_loop

log = structlog.get_logger()


async def serve(settings: config_settings.Settings) -> None:
    """Listen on the merchant port (and the metrics port, if set) until SIGTERM or SIGINT."""
    app = create_app(settings)
    runners = [server.AppRunner(app, access_log=None)]
    if settings.metrics_port is not None:
        runners.append(server.AppRunner(observability.metrics_app(app), access_log=None))
    ports = [settings.web_port, settings.metrics_port]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for runner, port in zip(runners, ports, strict=False):
            await runner.setup()
            # Several web processes may share the port (honcho start -c web=2).
            site = web.TCPSite(runner, settings.web_host, port, reuse_port=True)
            await site.start()
            log.info("web.listening", url=site.name)
        event_loop.steady_heap()  # the app, its pools and sessions live as long as the process
        await stop.wait()
    finally:
        for runner in reversed(runners):  # the metrics port first: it reads the app's pool
            await runner.cleanup()


def main() -> None:
    """Serve the intake until SIGTERM or SIGINT; refuse to start on unsafe settings."""
    settings = config_settings.load()
    logs.configure(settings.log_format, settings.log_level)
    event_loop.run(serve(settings), settings.event_loop)


if __name__ == "__main__":
    main()
