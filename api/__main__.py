"""`python -m api`: the `web` Procfile process (the intake on port 8083)."""

from __future__ import annotations

from aiohttp import web

from api.app import create_app
from config import settings as config_settings
from engine import logs
from engine import loop as event_loop


def main() -> None:
    """Serve the intake until SIGTERM or SIGINT."""
    settings = config_settings.load()
    logs.configure(settings.log_format, settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        # Several web processes may share the port (honcho start -c web=2).
        reuse_port=True,
        access_log=None,
        print=None,
        loop=event_loop.new(settings.event_loop),
    )


if __name__ == "__main__":
    main()
