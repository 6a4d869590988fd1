"""Application factory: one aiohttp app serving both the acquirer and the merchant."""

from aiohttp import web

from simulator.acquirer import setup_acquirer
from simulator.atom import setup_atom
from simulator.merchant import setup_merchant
from simulator.refunds import setup_refunds
from simulator.settings import SimulatorSettings
from simulator.shop import setup_shop


async def health(_request: web.Request) -> web.Response:
    """Liveness probe."""
    return web.json_response({"ok": True})


def create_app(settings: SimulatorSettings) -> web.Application:
    """Build a fresh simulator app; all state lives in this app, so apps never share it."""
    app = web.Application()
    setup_acquirer(app, settings)
    setup_refunds(app)
    setup_merchant(app, settings)
    setup_atom(app, settings)
    setup_shop(app, settings)
    app.router.add_get("/health", health)
    return app
