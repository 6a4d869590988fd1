"""create_app(settings): the aiohttp application, its shared state and its database pool."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from api import auth, backoffice, problems, routes, state
from api.ops import observability, openapi
from api.web import routes as web_routes
from config.settings import Settings
from engine import ids
from engine.payments import intake
from engine.store import db, devdb
from engine.store.repository import Repository
from engine.webhooks import egress
from engine.worker import wakeup

log = structlog.get_logger()


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[state.SETTINGS]
    dsn = await asyncio.to_thread(devdb.database_url, settings)
    pool = await db.create_pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        repo = Repository(pool)
        app[state.REPO] = repo
        app[state.LISTS] = pool
        if settings.replica_reads:
            app[state.LISTS] = await db.create_pool(
                db.prefer_standby(dsn), min_size=1, max_size=settings.db_pool_max
            )
        app[state.SNOWFLAKE] = ids.Snowflake(await repo.ops.next_node_id())
        app[state.WAKERS] = wakeup.Wakers(pool)
        app[state.INSERTS] = intake.GroupCommit(
            repo.payments,
            max_batch=settings.intake_batch_max,
            in_flight=settings.intake_batch_in_flight,
        )
        yield
        await app[state.INSERTS].close()
        await app[state.WAKERS].close()
        await repo.checkout.notices.close()
    finally:
        if state.LISTS in app and app[state.LISTS] is not pool:
            await app[state.LISTS].close()
        await pool.close()


async def _webhook_session(app: web.Application) -> AsyncIterator[None]:
    policy = egress.policy_from(app[state.SETTINGS])
    egress.log_allow_list(policy)  # the web process calls out too (an endpoint's test event)
    async with egress.client_session(app[state.SETTINGS], policy) as session:
        app[state.WEBHOOK_SESSION] = session
        yield


def create_app(settings: Settings) -> web.Application:
    """The intake application: payments, lookup, manual trigger, dead letters."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # problems outermost: what auth raises becomes problem+json too.
        middlewares=[
            observability.timing,
            problems.middleware,
            problems.shedding(
                settings.max_concurrent_requests,
                settings.max_concurrent_public_requests,
                auth.PUBLIC,
                streams=lambda path: path.startswith(auth.BROWSER) and path.endswith("/events"),
            ),
            auth.middleware(state.REPO, settings.api_key_secret),
            backoffice.middleware.middleware(),
        ],
    )
    app[state.SETTINGS] = settings
    app[auth.FAILURES] = Counter()
    app[auth.CACHE] = auth.KeyCache(settings.auth_cache_seconds)
    app[auth.THROTTLE] = auth.FailureThrottle(settings.auth_failures_per_minute)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_webhook_session)
    routes.mount(app)
    openapi.add_routes(app)
    backoffice.setup(app)
    web_routes.add_routes(app)
    return app
