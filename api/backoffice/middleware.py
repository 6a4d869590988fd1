"""Every back office request: security headers, the session, the CSRF token, roles, and
errors as pages people can read (never a stack trace, never a 500 for bad input).

A page needs a live session (a GET without one is sent to the login page); any POST needs the
session's CSRF token (403 without); /backoffice/console/ is for operators only, the other
pages for merchant users only; a viewer may read but not act (403).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import MultiDict, MultiDictProxy

from api import problems, state
from api.backoffice import context
from api.backoffice.context import PREFIX, PageError
from api.problems import Handler
from engine.accounts import sessions

log = structlog.get_logger()

SESSION_COOKIE = "bo_session"
LOGIN_CSRF_COOKIE = "bo_login_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
# No inline script or style anywhere: htmx is configured by a <meta> (indicator styles off).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Paths that need no session (the login page and the language switch before logging in).
OPEN = frozenset({f"{PREFIX}/login", f"{PREFIX}/language"})
# Paths of merchant users and operators alike.
SHARED = frozenset(
    {
        f"{PREFIX}/",
        f"{PREFIX}/logout",
        f"{PREFIX}/logout-everywhere",
        f"{PREFIX}/mode",
        f"{PREFIX}/language",
    }
)
# Changes a viewer may make: they are the viewer's own, not the merchant's.
VIEWER_MAY_POST = SHARED | {f"{PREFIX}/views", f"{PREFIX}/views/delete"}
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def headers(response: web.StreamResponse, production: bool) -> None:
    """The security headers of every back office answer."""
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cache-Control", "no-store")
    if production:
        h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def error_page(request: web.Request, status: int, title: str, detail: str) -> web.Response:
    """An error as a page (or, for htmx, the same markup to swap in)."""
    partial = bool(request.headers.get("HX-Request"))
    template = "error_fragment.html" if partial else "error.html"
    response = context.render(
        request, template, {"status": status, "title": title, "detail": detail}, status
    )
    if partial:
        # htmx swaps only 2xx answers by default: say where the message goes.
        response.headers["HX-Retarget"] = "#messages"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


async def _form(request: web.Request) -> MultiDictProxy[str]:
    if request.method in _SAFE:
        return MultiDictProxy(MultiDict())
    try:
        posted = await request.post()
    except web.HTTPException:
        raise  # 413: larger than the server takes
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:
        raise PageError(400, "Bad Request", "the form could not be read") from exc
    fields: MultiDict[str] = MultiDict()
    for name, value in posted.items():
        if not isinstance(value, str):
            raise PageError(400, "Bad Request", "this form takes no files")
        fields.add(name, value)
    return MultiDictProxy(fields)


def _csrf_ok(request: web.Request, expected: str | None) -> bool:
    given = request.headers.get(CSRF_HEADER) or request[context.FORM].get(CSRF_FIELD) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), str(expected).encode())


def _stale() -> PageError:
    return PageError(403, "Forbidden", "the form's security token is missing or stale")


async def _authorize(request: web.Request) -> None:
    """Load the session and check CSRF and role; raise what stops the request."""
    settings = request.app[state.SETTINGS]
    token = request.cookies.get(SESSION_COOKIE)
    found = None
    if token and len(token) <= 128:
        found = await request.app[context.ACCOUNTS].session(
            sessions.token_hash(token), settings.backoffice_idle_minutes * 60
        )
    path = request.path
    if found is not None:
        request[context.SESSION] = found
    if path in OPEN:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE) if found is None else found.csrf_token
        if request.method not in _SAFE and not _csrf_ok(request, expected):
            raise _stale()
        return
    if found is None:
        if request.method not in _SAFE:
            raise PageError(401, "Unauthorized", "your session has ended: log in again")
        target = context.url("/login", {"next": request.path_qs})
        if request.headers.get("HX-Request"):
            raise web.HTTPOk(headers={"HX-Redirect": target})
        raise web.HTTPSeeOther(target)
    if request.method not in _SAFE and not _csrf_ok(request, found.csrf_token):
        raise _stale()
    if path not in SHARED:
        console = path == f"{PREFIX}/console" or path.startswith(f"{PREFIX}/console/")
        if console != found.user.is_operator:
            raise PageError(404, "Not Found", f"no such page: {path}")
    if request.method not in _SAFE and not found.user.can_act and path not in VIEWER_MAY_POST:
        raise PageError(403, "Forbidden", "your role can read but not change anything")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        request[context.FORM] = await _form(request)
        await _authorize(request)
        return await handler(request)
    except PageError as exc:
        return error_page(request, exc.status, exc.title, exc.detail)


def _as_page(request: web.Request, answer: web.Response) -> web.Response:
    """A problem+json answer of the shared error mapping, as a page."""
    try:
        body: dict[str, Any] = json.loads(answer.text or "{}")
    except ValueError:
        body = {}
    page = error_page(
        request,
        answer.status,
        str(body.get("title") or answer.reason),
        str(body.get("detail") or ""),
    )
    for name in ("Retry-After", "Allow"):
        if name in answer.headers:
            page.headers[name] = answer.headers[name]
    return page


def middleware() -> Middleware:
    """The back office's middleware (a no-op outside /backoffice)."""

    @web.middleware
    async def backoffice(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != PREFIX and not request.path.startswith(f"{PREFIX}/"):
            return await handler(request)
        production = request.app[state.SETTINGS].env == "production"
        try:
            # The API's one mapping of engine errors (409, 404, 429 ...) is reused, as pages.
            response = await problems.middleware(request, lambda r: _guarded(r, handler))
        except web.HTTPException as exc:  # redirects (3xx): the middleware re-raises those
            headers(exc, production)
            raise
        if isinstance(response, web.Response) and response.content_type == problems.CONTENT_TYPE:
            response = _as_page(request, response)
        headers(response, production)
        return response

    return backoffice
