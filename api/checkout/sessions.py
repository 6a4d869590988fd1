"""Checkout sessions over HTTP: made and read by the merchant's server (secret key), viewed by
the browser's SDK (publishable key and the session's client secret), with its QR code.

Another merchant's session, or the other mode's, or a wrong client secret, is answered
exactly like a session nobody has: 404 `not_found`.
"""

from __future__ import annotations

import hmac
import io
import re
from typing import Any

import segno
from aiohttp import web

from api import auth, body, problems, responses, state
from api.operations import BAD_JSON, documented
from api.schemas.checkout import (
    CheckoutSession,
    PayRequest,
    QrImages,
    SessionAction,
    SessionPayment,
    SessionRequest,
    SessionView,
)
from engine.checkout import sessions
from engine.payments import intake
from engine.store.checkout import NewSession, Session

# What a session id looks like; anything else cannot exist and costs no query.
SESSION_ID = re.compile(r"^cs_[0-9A-Za-z]{22}$")
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)

# The parameters of the routes with a session in the path, and of the browser's ones.
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
BROWSER_PARAMS = (
    ID_PARAM,
    {"name": "clientSecret", "in": "query", "required": True, "schema": {"type": "string"}},
    {
        "name": "key",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "The publishable key, where no header can be sent (EventSource, images).",
    },
)
NOT_FOUND = "No such session for this key (`code` not_found)."
# What every browser route may refuse besides the key itself.
BROWSER_PROBLEMS: dict[int, str | dict[str, Any]] = {
    403: "A secret key was sent (`code` secret_key_in_browser).",
    404: NOT_FOUND,
}
_IDEMPOTENCY_KEY_PARAM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key again answers with the session it made (200).",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}


def not_found(public_id: str) -> problems.Problem:
    """The one answer for a session this caller may not see."""
    return problems.Problem(
        404,
        "Not Found",
        f"no checkout session {public_id[:80]!r}",
        slug="checkout-session-not-found",
        extra={"code": "not_found"},
    )


def app_url(request: web.Request, public_id: str) -> str:
    """The deep link: the customer app's payment page for this session."""
    return f"{request.url.origin()}/app/pay/{public_id}"


def public_view(request: web.Request, s: Session) -> SessionView:
    """What the SDK sees of a session (no order id, no urls of the merchant, no secrets)."""
    qr = f"{request.url.origin()}/api/public/checkout/sessions/{s.public_id}/qr"
    query = request.url.with_path("/").with_query(
        {"key": request.query.get("key") or _header_key(request), "clientSecret": s.client_secret}
    )
    return SessionView.of(
        s,
        qr=QrImages(svg=f"{qr}.svg?{query.query_string}", png=f"{qr}.png?{query.query_string}"),
        app_url=app_url(request, s.public_id),
        payment=SessionPayment.of_session(s),
        action=SessionAction.of_session(s),
        outcome=sessions.outcome(s),
        final=sessions.is_final(s),
    )


def merchant_view(s: Session) -> CheckoutSession:
    """What the merchant's server sees of its session."""
    return CheckoutSession.of(s, outcome=sessions.outcome(s))


@documented(
    "payCheckoutSessionHosted",
    "Pay the session at a provider's own page (Atom): the view's `action` then names the page"
    " to send the customer to.",
    params=BROWSER_PARAMS,
    body=PayRequest,
    ok={202: (SessionView, "The session's public view; its payment is PENDING.")},
    problems={
        400: BAD_JSON,
        409: "The session is not open any more (`code` says why).",
        422: "`method` is not one we know.",
    }
    | BROWSER_PROBLEMS,
)
async def pay(request: web.Request) -> web.Response:
    """POST …/{id}/pay?clientSecret=: the session's payment through Atom's hosted page.

    202 with the view: the payment is PENDING; the view's `action` names Atom's page as soon as
    Atom has answered with its token. 409 with `code` when the session is not open any more.
    """
    settings = request.app[state.SETTINGS]
    session = await browser_session(request)
    req = await body.read_model(request, settings, PayRequest)
    done = await sessions.pay_hosted(
        request.app[state.REPO],
        session.public_id,
        req.method,
        snowflake=request.app[state.SNOWFLAKE],
        tid_prefix=settings.tid_prefix,
        default_webhook_url=str(settings.default_webhook_url),
    )
    if not done.changed:
        raise problems.Problem(
            409,
            "Conflict",
            f"checkout session {session.public_id} is {done.session.status}",
            slug="checkout-session-closed",
            extra={"code": done.reason or "session_closed"},
        )
    return responses.send(public_view(request, done.session), 202)


def _header_key(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


@documented(
    "createCheckoutSession",
    "An open checkout session (Idempotency-Key honoured).",
    params=[_IDEMPOTENCY_KEY_PARAM],
    body=SessionRequest,
    ok={
        201: (CheckoutSession, "The new session, with its clientSecret."),
        200: (CheckoutSession, "A replay: the session this key or order made."),
    },
    problems={
        400: BAD_JSON,
        403: "A publishable key (`code` publishable_key_not_allowed).",
        409: "The order or key was used with another request.",
        422: "A field or the Idempotency-Key is invalid (`field` names it).",
    },
)
async def create_session(request: web.Request) -> web.Response:
    """POST /api/checkout/sessions: 201 with the open session; 200 for a replay."""
    settings = request.app[state.SETTINGS]
    req = await body.read_model(request, settings, SessionRequest)
    if req.amount > settings.max_amount:
        raise problems.validation("amount", f"must not exceed {settings.max_amount}")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise problems.validation("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
    who = auth.caller(request)
    # The request's members are the session's order by name (and how long it stays open).
    new = NewSession(
        **req.model_dump(),
        mid=who.mid,
        mode=who.mode,
        idempotency_key=key,
        request_digest=intake.request_digest(req.model_dump(mode="json")),
        actor=who.actor,
    )
    session, created = await sessions.create(request.app[state.REPO], new)
    return responses.send(merchant_view(session), 201 if created else 200)


async def _session(request: web.Request) -> Session:
    """The session in the path, if it is the caller's merchant's and mode's."""
    public_id = request.match_info["id"]
    who = auth.caller(request)
    found = (
        await sessions.read(request.app[state.REPO], public_id)
        if SESSION_ID.match(public_id)
        else None
    )
    if found is not None and found.mid == who.mid and found.mode != who.mode:
        if who.kind == "publishable":  # the SDK's "wrong key": a key of the other mode
            raise problems.Problem(
                401,
                "Unauthorized",
                f"this is a {who.mode} key; the session is in {found.mode} mode",
                slug="unauthorized",
                field="Authorization",
                extra={"code": "authentication_error", "reason": "other_mode"},
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        found = None
    if found is None or found.mid != who.mid:
        raise not_found(public_id)
    return found


@documented(
    "getCheckoutSession",
    "The session now, with its payment's tid.",
    params=[ID_PARAM],
    ok={200: (CheckoutSession, "The session.")},
    problems={404: NOT_FOUND},
)
async def get_session(request: web.Request) -> web.Response:
    """GET /api/checkout/sessions/{id}: the session now, with its payment's tid."""
    return responses.send(merchant_view(await _session(request)))


async def browser_session(request: web.Request) -> Session:
    """The session in the path for the SDK: its publishable key's, with the right secret."""
    found = await _session(request)
    given = request.query.get("clientSecret", "")
    if not hmac.compare_digest(given.encode(), found.client_secret.encode()):
        raise not_found(found.public_id)
    return found


@documented(
    "viewCheckoutSession",
    "The SDK's view of a session (publishable key).",
    params=BROWSER_PARAMS,
    ok={200: (SessionView, "The session's public view.")},
    problems=BROWSER_PROBLEMS,
)
async def public_session(request: web.Request) -> web.Response:
    """GET /api/public/checkout/sessions/{id}?clientSecret=: the SDK's view."""
    return responses.send(public_view(request, await browser_session(request)))


def qr_image(text: str, kind: str) -> tuple[bytes, str]:
    """`text` as a QR code: SVG or PNG bytes and the content type."""
    code = segno.make(text, error="m")
    out = io.BytesIO()
    if kind == "svg":
        code.save(out, kind="svg", scale=6, border=2, xmldecl=False)
        return out.getvalue(), "image/svg+xml"
    code.save(out, kind="png", scale=8, border=2)
    return out.getvalue(), "image/png"


_KIND_PARAM = {"name": "kind", "in": "path", "required": True, "schema": {"enum": ["svg", "png"]}}
_IMAGE = {"schema": {"type": "string", "format": "binary"}}


@documented(
    "checkoutSessionQr",
    "The app's link for this session as a QR code (svg or png).",
    params=[*BROWSER_PARAMS, _KIND_PARAM],
    ok={
        200: {
            "description": "The image.",
            "content": {"image/svg+xml": _IMAGE, "image/png": _IMAGE},
        }
    },
    problems=BROWSER_PROBLEMS,
)
async def qr(request: web.Request) -> web.Response:
    """GET /api/public/checkout/sessions/{id}/qr.svg|qr.png: the deep link as a QR code."""
    session = await browser_session(request)
    data, content_type = qr_image(app_url(request, session.public_id), request.match_info["kind"])
    return web.Response(
        body=data, content_type=content_type, headers={"Cache-Control": "private, max-age=3600"}
    )


CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Any origin may call the browser's routes (they need a publishable key, not cookies)."""
    if request.path.startswith(auth.BROWSER):
        origin = request.headers.get("Origin")
        response.headers["Access-Control-Allow-Origin"] = origin or "*"
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        if origin:
            response.headers["Vary"] = "Origin"


# A CORS preflight carries no credentials, by design (public). Its entry serves several
# routes, so each takes its operationId from its method and path (the empty id).
_ALLOWED = {204: {"description": "Allowed."}}


@documented("", "CORS preflight.", params=[ID_PARAM], ok=_ALLOWED, public=True)
async def preflight(request: web.Request) -> web.Response:
    """OPTIONS on a browser route: the CORS answer (headers added by cors_headers)."""
    return web.Response(status=204)


@documented(
    "",
    "CORS preflight.",
    params=[ID_PARAM, _KIND_PARAM],
    ok=_ALLOWED,
    problems={404: "Not a QR image kind."},
    public=True,
)
async def qr_preflight(request: web.Request) -> web.Response:
    """OPTIONS on the QR image's route: the CORS answer."""
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Mount the session routes and the CORS headers of the browser's ones."""
    public = "/api/public/checkout/sessions/{id}"
    app.add_routes(
        [
            web.post("/api/checkout/sessions", create_session),
            web.get("/api/checkout/sessions/{id}", get_session),
            web.get(public, public_session),
            web.options(public, preflight),
            web.get(public + "/qr.{kind:svg|png}", qr),
            web.options(public + "/qr.{kind:svg|png}", qr_preflight),
            web.options(public + "/events", preflight),
            web.post(public + "/pay", pay),
            web.options(public + "/pay", preflight),
        ]
    )
    app.on_response_prepare.append(cors_headers)
