"""GET /metrics (Prometheus text) and the latency of every request."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from api import app as app_module
from api.problems import Handler
from engine import errors, metrics


@web.middleware
async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Observe each request's latency by route template (never the raw path: bounded labels)."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.HTTP_SECONDS.labels(request.method, route, str(status)).observe(
            time.perf_counter() - start
        )


async def serve_metrics(request: web.Request) -> web.Response:
    """GET /metrics: every process's counters and the database's gauges."""
    try:
        snapshot = await request.app[app_module.REPO].metrics_snapshot()
    except errors.DatabaseUnavailable:
        snapshot = None  # the process metrics are still worth serving
    body = metrics.exposition(snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
