"""GET /metrics (Prometheus text) and the latency of every request."""

from __future__ import annotations

import hmac
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from api import problems, state
from api.operations import documented, problem
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


MAIN = web.AppKey("main", web.Application)


def _check_token(request: web.Request, token: str | None) -> None:
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant time: how long the comparison takes says nothing about the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise problems.Problem(
            401,
            "Unauthorized",
            "send Authorization: Bearer <metrics token>",
            slug="unauthorized",
            field="Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


async def _exposition(request: web.Request, app: web.Application) -> web.Response:
    _check_token(request, app[state.SETTINGS].metrics_token)
    try:
        snapshot = await app[state.REPO].ops.metrics_snapshot()
    except errors.DatabaseUnavailable:
        snapshot = None  # the process metrics are still worth serving
    body = metrics.exposition(snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@documented(
    "metrics",
    "Prometheus metrics of every process.",
    ok={
        200: {
            "description": "The Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    problems={
        401: problem("ENGINE_METRICS_TOKEN is set: send it as a bearer."),
        404: "Served on ENGINE_METRICS_PORT only.",
    },
)
async def serve_metrics(request: web.Request) -> web.Response:
    """GET /metrics: every process's counters and the database's gauges."""
    if request.app[state.SETTINGS].metrics_port is not None:
        raise web.HTTPNotFound()  # served on its own port only
    return await _exposition(request, request.app)


async def _serve_on_metrics_port(request: web.Request) -> web.Response:
    return await _exposition(request, request.app[MAIN])


def metrics_app(main: web.Application) -> web.Application:
    """The application of ENGINE_METRICS_PORT: /metrics of `main`, and nothing else."""
    app = web.Application(middlewares=[problems.middleware])
    app[MAIN] = main
    app.router.add_get("/metrics", _serve_on_metrics_port)
    return app
