"""Bearer API keys: who is calling, checked on every merchant request.

A missing, malformed, unknown, expired or revoked key gets 401 (and is counted); the
merchant's id is then the only one any handler may read or write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from api import problems
from api.problems import Handler
from engine import merchants, metrics
from engine.repository import Repository

log = structlog.get_logger()

# Paths anyone may call: health checks, the API description, metrics.
# Provider callbacks carry the provider's own signature instead of a merchant's key.
PUBLIC = frozenset({"/health", "/openapi.json", "/metrics", "/api/providers/atom/callback"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The merchant behind a request's key."""

    mid: str
    key_id: int
    prefix: str
    mode: str

    @property
    def actor(self) -> str:
        """How the history names this caller."""
        return f"merchant:{self.prefix}"

    @property
    def is_test(self) -> bool:
        """True for sk_test_ keys."""
        return self.mode == "test"


CALLER = web.RequestKey("caller", Caller)
FAILURES = web.AppKey("auth_failures", Counter[str])


def caller(request: web.Request) -> Caller:
    """The authenticated caller of a merchant endpoint."""
    return request[CALLER]


def _unauthorized(request: web.Request, reason: str, detail: str) -> problems.Problem:
    request.app[FAILURES][reason] += 1
    metrics.AUTH_FAILURES.labels(reason).inc()
    log.warning("auth.failed", reason=reason, path=request.path)
    return problems.Problem(
        401, "Unauthorized", detail, slug="unauthorized", field="Authorization",
        extra={"reason": reason}, headers={"WWW-Authenticate": 'Bearer realm="api"'},
    )  # fmt: skip


def middleware(repo_key: web.AppKey[Repository], secret: str) -> Middleware:
    """The middleware: every /api/ path needs `Authorization: Bearer <key>`."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC or not request.path.startswith("/api/"):
            return await handler(request)
        header = request.headers.get("Authorization")
        if not header or not header.strip():
            raise _unauthorized(request, "missing", "send Authorization: Bearer <api key>")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or merchants.parse_key(key) is None:
            raise _unauthorized(
                request, "malformed", "expected Authorization: Bearer sk_live_… or sk_test_…"
            )
        found = await request.app[repo_key].authenticate(merchants.key_hash(secret, key))
        if found is None:
            raise _unauthorized(request, "unknown", "this API key is not known")
        if found.revoked_at is not None:
            raise _unauthorized(request, "revoked", "this API key was revoked")
        if not found.active:
            raise _unauthorized(request, "expired", "this API key has expired")
        request[CALLER] = Caller(found.mid, found.id, found.prefix, found.mode)
        return await handler(request)

    return authenticate
