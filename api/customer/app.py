"""The customer's app: sign in, open a session's payment page, confirm or cancel, history.

Cookie sessions (HttpOnly, SameSite=Lax) with a CSRF token on every POST. A session's page is
any merchant's: the customer reached it by its QR code or link. What a confirm or a cancel
did comes back as JSON (`Accept: application/json`) or as a 303 to the payment page.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from api import auth, problems, responses, state
from api.checkout.sessions import SESSION_ID, not_found, payment_view
from api.customer import pages, returns
from engine.checkout import sessions
from engine.customers import accounts
from engine.store.checkout import CustomerPayment, Session
from engine.store.customers import Customer

_FORM_LIMIT = 8 * 1024
HISTORY_LIMIT = 100


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def _form(request: web.Request) -> Any:
    if (request.content_length or 0) > _FORM_LIMIT:
        raise problems.Problem(413, "Content Too Large", "the form is too large")
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            return await request.post()
        except web.HTTPException:
            raise  # 413: larger than the server takes
        except (ValueError, UnicodeDecodeError, AssertionError) as exc:
            # A multipart body without its boundary, or one that is not what it says.
            raise problems.validation("body", "the form could not be read") from exc
    return {}


async def _customer(request: web.Request) -> tuple[Customer, str]:
    """The signed-in customer, or 401 (JSON) / 303 to the login page (pages)."""
    found = await pages.signed_in(request)
    if found is not None:
        return found
    if _wants_json(request) or request.path.startswith("/app/api/"):
        raise problems.Problem(
            401, "Unauthorized", "sign in first", slug="signed-out", extra={"code": "signed_out"}
        )
    raise web.HTTPSeeOther(f"/app/?next={request.path}")


async def _session(request: web.Request) -> Session:
    public_id = request.match_info["id"]
    found = (
        await sessions.read(request.app[state.REPO], public_id)
        if SESSION_ID.match(public_id)
        else None
    )
    if found is None:
        raise not_found(public_id)
    return found


def _session_json(request: web.Request, s: Session) -> dict[str, Any]:
    return {
        "id": s.public_id,
        "status": s.status,
        "merchantName": s.merchant_name,
        "orderName": s.order_name,
        "amount": s.amount,
        "currency": s.currency,
        "amountText": pages.amount_text(s.amount, s.currency, pages.lang(request)),
        "expiresAt": responses.iso(s.expires_at),
        "payment": payment_view(s),
        "outcome": sessions.outcome(s),
        "final": sessions.is_final(s),
    }


async def _pay_context(
    request: web.Request, s: Session, customer: Customer, error: str | None
) -> dict[str, Any]:
    cards = await request.app[state.REPO].customers.cards(customer.id)
    outcome = sessions.outcome(s)
    back = None
    if outcome is not None:
        back = s.success_url if outcome["result"] == "success" else s.cancel_url
    return {
        "session": _session_json(request, s),
        "amount_text": pages.amount_text(s.amount, s.currency, pages.lang(request)),
        "card": {"brand": cards[0].brand, "last4": cards[0].last4} if cards else None,
        "payment": payment_view(s),
        "outcome": outcome,
        "error": error,
        "return_url": back,
    }


async def home(request: web.Request) -> web.Response:
    """GET /app/: the QR payment menu, or the login form."""
    if await pages.signed_in(request) is not None:
        return pages.render(request, "scan", {})
    csrf = request.cookies.get(pages.LOGIN_COOKIE) or secrets.token_urlsafe(24)
    next_path = pages.safe_next(request.query.get("next"))
    response = pages.render(request, "login", {"error": None, "next": next_path, "csrf": csrf})
    _set_cookie(response, pages.LOGIN_COOKIE, csrf, 3600)
    return response


def _set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/app", httponly=True, samesite="Lax")


async def login(request: web.Request) -> web.StreamResponse:
    """POST /app/login (email, password, csrf, next): a session cookie, then `next`."""
    form = await _form(request)
    expected = request.cookies.get(pages.LOGIN_COOKIE, "")
    if not expected:
        raise web.HTTPSeeOther("/app/")
    pages.check_csrf(request, expected, form)
    throttle = request.app[auth.THROTTLE]
    address = request.remote or "unknown"
    next_path = pages.safe_next(form.get("next"))
    if throttle.retry_after(address) is not None:
        return _login_again(request, "throttled", next_path, 429, expected)
    email, password = form.get("email"), form.get("password")
    signed = None
    if isinstance(email, str) and isinstance(password, str) and 0 < len(email) <= 254:
        signed = await accounts.sign_in(
            request.app[state.REPO].customers, email.strip(), password[:1024]
        )
    if signed is None:
        throttle.failed(address)
        return _login_again(request, "bad_login", next_path, 401, expected)
    response = web.HTTPSeeOther(next_path)
    _set_cookie(response, pages.COOKIE, signed.token, int(accounts.SESSION_SECONDS))
    response.del_cookie(pages.LOGIN_COOKIE, path="/app")
    raise response


def _login_again(
    request: web.Request, error: str, next_path: str, status: int, csrf: str
) -> web.Response:
    context = {"error": error, "next": next_path, "csrf": csrf}
    return pages.render(request, "login", context, status)


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /app/logout (csrf): the session stops working now."""
    form = await _form(request)
    found = await pages.signed_in(request)
    if found is not None:
        pages.check_csrf(request, found[1], form)
        token = request.cookies.get(pages.COOKIE, "")
        await request.app[state.REPO].customers.end_session(accounts.token_hash(token))
    response = web.HTTPSeeOther("/app/")
    response.del_cookie(pages.COOKIE, path="/app")
    raise response


async def pay_page(request: web.Request) -> web.Response:
    """GET /app/pay/{id}: the payment page (opening it marks the session scanned)."""
    customer, _ = await _customer(request)
    session = await _session(request)
    session = await sessions.scan(request.app[state.REPO], session, customer)
    return pages.render(request, "pay", await _pay_context(request, session, customer, None))


async def pay_json(request: web.Request) -> web.Response:
    """GET /app/api/pay/{id}: the payment page's data, for the app's script."""
    customer, csrf = await _customer(request)
    session = await _session(request)
    context = await _pay_context(request, session, customer, None)
    return responses.json_response(context | {"csrf": csrf})


async def _act(request: web.Request, action: str) -> web.StreamResponse:
    customer, csrf = await _customer(request)
    pages.check_csrf(request, csrf, await _form(request))
    session = await _session(request)
    repo = request.app[state.REPO]
    if action == "cancel":
        result = await sessions.cancel(repo, session.public_id, customer, session)
    else:
        cards = await repo.customers.cards(customer.id)
        if not cards:
            result = sessions.Result(session, False, "no_card")
        else:
            settings = request.app[state.SETTINGS]
            result = await sessions.confirm(
                repo,
                session.public_id,
                customer,
                cards[0],
                snowflake=request.app[state.SNOWFLAKE],
                tid_prefix=settings.tid_prefix,
                default_webhook_url=str(settings.default_webhook_url),
                session=session,
            )
            if result.changed:
                request.app[state.WAKERS].payments.poke()
    if _wants_json(request):
        body = {
            "changed": result.changed,
            "reason": result.reason,
            "session": _session_json(request, result.session),
        }
        return responses.json_response(body, 200 if result.changed else 409)
    if result.changed:
        raise web.HTTPSeeOther(f"/app/pay/{session.public_id}")
    context = await _pay_context(request, result.session, customer, result.reason)
    return pages.render(request, "pay", context, 409)


async def confirm(request: web.Request) -> web.StreamResponse:
    """POST /app/pay/{id}/confirm: pay with the customer's card (once, whatever the clicks)."""
    return await _act(request, "confirm")


async def cancel(request: web.Request) -> web.StreamResponse:
    """POST /app/pay/{id}/cancel: cancel the purchase; nothing is charged."""
    return await _act(request, "cancel")


def _history_item(request: web.Request, p: CustomerPayment) -> dict[str, Any]:
    language = pages.lang(request)
    return {
        "merchantName": p.merchant_name,
        "orderName": p.order_name,
        "amount": p.amount,
        "currency": p.currency,
        "amount_text": pages.amount_text(p.amount, p.currency, language),
        "status": p.status,
        "created_text": p.requested_at.strftime("%Y-%m-%d %H:%M"),
        "createdAt": responses.iso(p.requested_at),
        "tid": p.tid,
        "refundedAmount": p.refunded_amount,
        "refunds": [
            {
                "amount": r["amount"],
                "amount_text": pages.amount_text(r["amount"], r["currency"], language),
                "status": r["status"],
                "created_text": r["requested_at"].strftime("%Y-%m-%d %H:%M"),
            }
            for r in p.refunds
        ],
    }


async def _history(request: web.Request) -> list[dict[str, Any]]:
    customer, _ = await _customer(request)
    paid = await request.app[state.REPO].checkout.customer_payments(customer.id, HISTORY_LIMIT)
    return [_history_item(request, p) for p in paid]


async def history_page(request: web.Request) -> web.Response:
    """GET /app/history: the customer's payments across merchants, newest first."""
    return pages.render(request, "history", {"items": await _history(request)})


async def history_json(request: web.Request) -> web.Response:
    """GET /app/api/history: the same as JSON."""
    return responses.json_response({"items": await _history(request)})


def add_routes(app: web.Application) -> None:
    """Mount the app's routes and its templates."""
    pages.setup(app)
    app.add_routes(
        [
            web.get("/app/", home),
            web.post("/app/login", login),
            web.post("/app/logout", logout),
            web.get("/app/pay/{id}", pay_page),
            web.post("/app/pay/{id}/confirm", confirm),
            web.post("/app/pay/{id}/cancel", cancel),
            web.get("/app/history", history_page),
            web.get("/app/api/pay/{id}", pay_json),
            web.get("/app/api/history", history_json),
            *returns.ROUTES,
        ]
    )
