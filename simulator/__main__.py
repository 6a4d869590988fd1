"""Entry point: `python -m simulator` serves the simulator on SIM_HOST:SIM_PORT."""

import asyncio
import logging
import sys

import structlog
from aiohttp import web
from pydantic import ValidationError

from simulator.app import create_app
from simulator.settings import SimulatorSettings


def configure_logging(log_format: str, level: str = "info") -> None:
    """Route structlog output to stdout as console text or JSON lines."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        # Colours only on a terminal: in a log file (supervisord's) or a pipe they are noise.
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # Without it every call, even one filtered out, builds its logger anew: 4 % of the
        # simulator's CPU under load (py-spy). Safe here: this process configures once.
        cache_logger_on_first_use=True,
    )


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop's event loop if asked for and installed, else asyncio's."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main() -> int:
    """Load settings, configure logging and serve until SIGINT/SIGTERM; returns the exit status."""
    try:
        settings = SimulatorSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "SIM_" + str(first["loc"][0]).upper() if first["loc"] else "SIM_*"
        # One line, exit status 2: the conventional "usage/configuration error" signal.
        print(f"simulator: invalid {name}: {first['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    structlog.get_logger("simulator").info(
        "simulator.starting", host=settings.host, port=settings.port
    )
    # run_app installs SIGINT and SIGTERM handlers that trigger a graceful shutdown.
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        loop=new_loop(settings.event_loop),
    )
    structlog.get_logger("simulator").info("simulator.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
