"""The route table of the merchant API and the public paths: one place that mounts them.

Each handler module lists its routes (ROUTES); create_app mounts them here, and the operations'
routes with api/ops/openapi.add_routes. The OpenAPI document is generated from the routes so
registered.
"""

from __future__ import annotations

from aiohttp import web

from api.checkout import sessions as checkout_sessions
from api.checkout import stream as checkout_stream
from api.customer import app as customer_app
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
    # Checkout (its session API, the SDK's public view and stream) and the customer's app.
    checkout_sessions.add_routes(app)
    checkout_stream.add_routes(app)
    customer_app.add_routes(app)
    app[endpoints.PACER] = endpoints.TestPacer(endpoints.TEST_INTERVAL_SECONDS)
