"""The route table of the merchant API and the public paths: one place that mounts them.

Each handler module lists its routes (ROUTES); create_app mounts them here, and the operations'
routes with api/ops/openapi.add_routes. The OpenAPI document is generated from the routes so
registered.
"""

from __future__ import annotations

from aiohttp import web

from api.merchant import endpoints, history, keys, payments, refunds
from api.public import callbacks

# In this order: /api/payments/unresolved is matched before /api/payments/{tid}.
TABLES = (
    payments.ROUTES,
    keys.ROUTES,
    endpoints.ROUTES,
    refunds.ROUTES,
    callbacks.ROUTES,
    history.ROUTES,
)


def mount(app: web.Application) -> None:
    """Register every merchant and public route on `app`, and what their handlers keep."""
    for table in TABLES:
        app.add_routes(table)
    app[endpoints.PACER] = endpoints.TestPacer(endpoints.TEST_INTERVAL_SECONDS)
