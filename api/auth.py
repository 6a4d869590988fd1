"""Bearer API keys: who is calling, checked on every merchant request.

A missing, malformed, unknown, expired or revoked key gets 401 (and is counted); the
merchant's id is then the only one any handler may read or write.

A known key is remembered for `ENGINE_AUTH_CACHE_SECONDS` (1 s by default), so a busy key
costs one database lookup a second instead of one a request. Expiry is checked on every
request; a revoke or roll forgets every remembered key at once in the process that served it,
and other web processes notice within the cache time.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from api import problems
from api.problems import Handler
from engine import metrics
from engine.merchants import keys
from engine.models import AuthKey
from engine.store.repository import Repository

log = structlog.get_logger()

# Paths anyone may call: health checks, the API description, metrics.
# Provider callbacks carry the provider's own signature instead of a merchant's key.
PUBLIC = frozenset({"/health", "/openapi.json", "/metrics", "/api/providers/atom/callback"})
# The browser's checkout routes: a publishable key (header, or `key` query parameter for
# EventSource and images), never a secret one.
BROWSER = "/api/public/checkout/"


@dataclass(frozen=True, slots=True)
class Caller:
    """The merchant behind a request's key."""

    mid: str
    key_id: int
    prefix: str
    mode: str
    kind: str = "secret"

    @property
    def actor(self) -> str:
        """How the history names this caller."""
        return f"merchant:{self.prefix}"

    @property
    def is_test(self) -> bool:
        """True for sk_test_ keys."""
        return self.mode == "test"


class KeyCache:
    """Known keys by hash, each for `ttl` seconds; unknown keys are never remembered."""

    # A bound on memory: past it the cache starts over (a key is one lookup away).
    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._keys: dict[bytes, tuple[float, AuthKey]] = {}

    def get(self, hashed: bytes) -> AuthKey | None:
        """The remembered key, if it was looked up less than `ttl` seconds ago."""
        hit = self._keys.get(hashed)
        if hit is None:
            return None
        if time.monotonic() - hit[0] >= self.ttl:
            del self._keys[hashed]
            return None
        return hit[1]

    def put(self, hashed: bytes, key: AuthKey) -> None:
        """Remember a key that the database knows."""
        if self.ttl <= 0:
            return
        if len(self._keys) >= self.MAX_ENTRIES:
            self._keys.clear()
        self._keys[hashed] = (time.monotonic(), key)

    def clear(self) -> None:
        """Forget every key (a key was revoked or rolled)."""
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)


class FailureThrottle:
    """Failed authentications per client address: a token bucket each, in bounded memory.

    Every address may fail `per_minute` times in a burst, then once every 60/per_minute
    seconds. At most `max_clients` addresses are remembered; past that the one that failed
    longest ago is forgotten (it starts again with a full bucket, as after a quiet minute).
    """

    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, max_clients: int = MAX_CLIENTS) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        # address -> (tokens left, when counted); insertion order is least recent first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, address: str, now: float) -> float:
        tokens, then = self._buckets.get(address, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.rate)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may fail again, or None if it may now."""
        if self.capacity <= 0 or address not in self._buckets:
            return None
        tokens = self._tokens(address, time.monotonic())
        return None if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def failed(self, address: str) -> None:
        """Count one failure of `address`."""
        if self.capacity <= 0:
            return
        now = time.monotonic()
        tokens = self._tokens(address, now)
        self._buckets.pop(address, None)  # re-inserted last: the most recent
        while len(self._buckets) >= self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[address] = (max(0.0, tokens - 1), now)

    def __len__(self) -> int:
        return len(self._buckets)


CALLER = web.RequestKey("caller", Caller)
FAILURES = web.AppKey("auth_failures", Counter[str])
CACHE = web.AppKey("auth_cache", KeyCache)
THROTTLE = web.AppKey("auth_throttle", FailureThrottle)


def _expired(key: AuthKey) -> bool:
    return key.expires_at is not None and key.expires_at <= datetime.now(UTC)


def caller(request: web.Request) -> Caller:
    """The authenticated caller of a merchant endpoint."""
    return request[CALLER]


def _client(request: web.Request) -> str:
    # The peer's address (behind a proxy, the proxy's: throttle there too, or trust its header).
    return request.remote or "unknown"


def _unauthorized(
    request: web.Request, reason: str, detail: str, code: str | None = None
) -> problems.Problem:
    request.app[FAILURES][reason] += 1
    metrics.AUTH_FAILURES.labels(reason).inc()
    throttle = request.app[THROTTLE]
    client = _client(request)
    wait = throttle.retry_after(client)
    throttle.failed(client)
    log.warning(
        "auth.failed", reason=reason, path=request.path, client=client, throttled=wait is not None
    )
    if wait is not None:
        # Refused without saying whether this key was right; a valid key still gets in.
        return problems.Problem(
            429,
            "Too Many Requests",
            "too many failed authentications from this address",
            slug="auth-throttled",
            field="Authorization",
            extra={"code": "rate_limited"} if code else {},
            headers={"Retry-After": str(wait)},
        )
    return problems.Problem(
        401,
        "Unauthorized",
        detail,
        slug="unauthorized",
        field="Authorization",
        extra={"reason": reason} | ({"code": code} if code else {}),
        headers={"WWW-Authenticate": 'Bearer realm="api"'},
    )


def _browser_key(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return request.query.get("key", "").strip()


def _refused_kind(request: web.Request, kind: str) -> problems.Problem:
    """A key of the wrong kind for this route: a secret key in a browser, or a publishable
    key on the merchant API."""
    request.app[FAILURES][f"{kind}_key"] += 1
    log.warning("auth.wrong_kind", kind=kind, path=request.path, client=_client(request))
    if kind == "secret":
        return problems.Problem(
            403,
            "Forbidden",
            "a secret key must never reach a browser: use your publishable key (pk_...) here,"
            " and roll this secret key",
            slug="secret-key-in-browser",
            field="Authorization",
            extra={"code": "secret_key_in_browser"},
        )
    return problems.Problem(
        403,
        "Forbidden",
        "a publishable key can only start and follow checkout sessions; use a secret key",
        slug="publishable-key",
        field="Authorization",
        extra={"code": "publishable_key_not_allowed"},
    )


def middleware(repo_key: web.AppKey[Repository], secret: str) -> Middleware:
    """The middleware: every /api/ path needs `Authorization: Bearer <key>`."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC or not request.path.startswith("/api/"):
            return await handler(request)
        if isinstance(request.match_info.http_exception, web.HTTPMethodNotAllowed):
            # A method the path does not have is 405 (naming the allowed ones) whatever the
            # key: the route table is public (GET /openapi.json), so it tells nobody anything.
            return await handler(request)
        browser = request.path.startswith(BROWSER)
        code = "authentication_error" if browser else None
        if browser:
            if request.method == "OPTIONS":  # a CORS preflight carries no key
                return await handler(request)
            key = _browser_key(request)
            if not key:
                raise _unauthorized(request, "missing", "send your publishable key", code)
        else:
            header = request.headers.get("Authorization")
            if not header or not header.strip():
                raise _unauthorized(request, "missing", "send Authorization: Bearer <api key>")
            scheme, _, key = header.partition(" ")
            key = key.strip() if scheme.lower() == "bearer" else ""
        parsed = keys.parse(key)
        if parsed is None:
            raise _unauthorized(
                request,
                "malformed",
                "expected a publishable key pk_live_… or pk_test_…"
                if browser
                else "expected Authorization: Bearer sk_live_… or sk_test_…",
                code,
            )
        if (parsed[0] == "secret") == browser:
            raise _refused_kind(request, parsed[0])
        hashed = keys.key_hash(secret, key)
        cache = request.app[CACHE]
        found = cache.get(hashed)
        if found is None:
            found = await request.app[repo_key].merchants.authenticate(hashed)
            if found is None:
                raise _unauthorized(request, "unknown", "this API key is not known", code)
            cache.put(hashed, found)
        if found.revoked_at is not None:
            raise _unauthorized(request, "revoked", "this API key was revoked", code)
        if not found.active or _expired(found):
            raise _unauthorized(request, "expired", "this API key has expired", code)
        request[CALLER] = Caller(found.mid, found.id, found.prefix, found.mode, found.kind)
        return await handler(request)

    return authenticate
