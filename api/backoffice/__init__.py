"""The back office: pages for merchants' staff and for our operators, in the web process.

Server-rendered (Jinja2, autoescaped) under /backoffice, with htmx for partial updates and
files under /static (api/web). Sessions, CSRF and roles: middleware.py; accounts:
engine/accounts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from api import state
from api.backoffice import (
    console,
    context,
    deliveries,
    developers,
    login,
    middleware,
    overview,
    payment,
    payments,
)
from engine import passwords
from engine.store.accounts import AccountStore
from engine.store.backoffice import BackofficeStore
from engine.store.recovery import RecoveryStore
from engine.store.reports import ReportsStore

WEB = Path(__file__).resolve().parent.parent / "web"

__all__ = ["middleware", "setup"]


async def _stores(app: web.Application) -> AsyncIterator[None]:
    pool = app[state.REPO].pool
    app[context.ACCOUNTS] = AccountStore(pool)
    app[context.CONSOLE] = BackofficeStore(pool)
    app[context.REPORTS] = ReportsStore(pool, lists=app[state.LISTS])
    app[context.RECOVERY] = RecoveryStore(pool)
    ph = passwords.hasher(app[state.SETTINGS].backoffice_password_profile)
    app[context.CHECKER] = passwords.Checker(ph)
    yield


def setup(app: web.Application) -> None:
    """Templates, stores (once the database is up), the pages' routes and /static."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(WEB / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    app.cleanup_ctx.append(_stores)
    login.add_routes(app)
    payments.add_routes(app)
    payment.add_routes(app)
    developers.add_routes(app)
    deliveries.add_routes(app)
    overview.add_routes(app)
    console.add_routes(app)
    app.router.add_get(context.PREFIX, login.root)
    app.router.add_static("/static", WEB / "static", append_version=False)
