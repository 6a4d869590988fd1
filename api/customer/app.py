"""The customer's app: sign in, open a session's payment page, confirm or cancel, history.

Cookie sessions (HttpOnly, SameSite=Lax) with a CSRF token on every POST. A session's page is
any merchant's: the customer reached it by its QR code or link. What a confirm or a cancel
did comes back as JSON (`Accept: application/json`) or as a 303 to the payment page.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from api import auth, problems, responses, state
from api.checkout.sessions import ID_PARAM, SESSION_ID, not_found
from api.customer import pages, returns
from api.operations import HTML, JSON, H, answer, documented, page
from api.schemas.checkout import SessionOutcome, SessionPayment
from api.schemas.customer import (
    ActionResult,
    AppSession,
    Card,
    History,
    HistoryItem,
    HistoryRefund,
    PayData,
    PayPage,
)
from engine.checkout import sessions
from engine.customers import accounts
from engine.store.checkout import CustomerPayment, Session
from engine.store.customers import Customer

_FORM_LIMIT = 8 * 1024
HISTORY_LIMIT = 100

# What the document says of the app's routes: its own cookie sign-in, not an API key.
_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}


def _see_other(where: str) -> dict[str, Any]:
    return {"description": f"See other: {where}.", "headers": _LOCATION}


_TO_LOGIN = _see_other("signed out, the login form (with `next`)")
_SIGNED_OUT = "Not signed in (`code` signed_out)."
_CSRF = "Missing or wrong CSRF token (`code` csrf)."
_NO_SESSION = "No such session (`code` not_found)."
_FORM: dict[int, str | dict[str, Any]] = {
    413: "The form is too large.",
    422: "The form could not be read.",
}


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


def _app_session(request: web.Request, s: Session) -> AppSession:
    return AppSession.of(
        s,
        amount_text=pages.amount_text(s.amount, s.currency, pages.lang(request)),
        payment=SessionPayment.of_session(s),
        outcome=sessions.outcome(s),
        final=sessions.is_final(s),
    )


async def _pay_page(
    request: web.Request, s: Session, customer: Customer, error: str | None
) -> PayPage:
    cards = await request.app[state.REPO].customers.cards(customer.id)
    outcome = SessionOutcome.of_session(s)
    back = None
    if outcome is not None:
        back = s.success_url if outcome.result == "success" else s.cancel_url
    return PayPage(
        session=_app_session(request, s),
        amount_text=pages.amount_text(s.amount, s.currency, pages.lang(request)),
        card=Card.of(cards[0]) if cards else None,
        payment=SessionPayment.of_session(s),
        outcome=outcome,
        error=error,
        return_url=back,
    )


def _render_pay(request: web.Request, pay: PayPage, status: int = 200) -> web.Response:
    """The payment page: the template reads the same members as the JSON."""
    return pages.render(request, "pay", pay.model_dump(mode="json", by_alias=True), status)


@documented("getApp", "The QR payment menu, or the login form.", ok={200: page("The page.")})
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


@documented(
    "postAppLogin",
    "Sign in (form: email, password, csrf, next), then 303 to `next`.",
    ok={303: _see_other("signed in, `next`; or the login form when its cookie is missing")},
    problems=_FORM
    | {
        401: page("The login form again: the email or the password is wrong."),
        403: _CSRF,
        429: page("The login form again: too many failed sign-ins from this address."),
    },
)
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


@documented(
    "postAppLogout",
    "Sign out (form: csrf), then 303 to the app.",
    ok={303: _see_other("the app's menu")},
    problems={403: _CSRF} | _FORM,
)
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


@documented(
    "getAppPayById",
    "The payment page (opening it marks the session scanned).",
    params=[ID_PARAM],
    ok={200: page("The page."), 303: _TO_LOGIN},
    problems={404: _NO_SESSION},
)
async def pay_page(request: web.Request) -> web.Response:
    """GET /app/pay/{id}: the payment page (opening it marks the session scanned)."""
    customer, _ = await _customer(request)
    session = await _session(request)
    session = await sessions.scan(request.app[state.REPO], session, customer)
    return _render_pay(request, await _pay_page(request, session, customer, None))


@documented(
    "getAppApiPayById",
    "The payment page's data.",
    params=[ID_PARAM],
    ok={200: (PayData, "The data.")},
    problems={401: _SIGNED_OUT, 404: _NO_SESSION},
)
async def pay_json(request: web.Request) -> web.Response:
    """GET /app/api/pay/{id}: the payment page's data, for the app's script."""
    customer, csrf = await _customer(request)
    session = await _session(request)
    shown = await _pay_page(request, session, customer, None)
    return responses.send(PayData(**shown.model_dump(), csrf=csrf))


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
        body = ActionResult(
            changed=result.changed,
            reason=result.reason,
            session=_app_session(request, result.session),
        )
        return responses.send(body, 200 if result.changed else 409)
    if result.changed:
        raise web.HTTPSeeOther(f"/app/pay/{session.public_id}")
    shown = await _pay_page(request, result.session, customer, result.reason)
    return _render_pay(request, shown, 409)


def _action(op_id: str, summary: str) -> Callable[[H], H]:
    """The entry of a confirm or a cancel: JSON when asked for (Accept), else pages."""
    refused = {
        "description": "Not done: the session had moved on (`reason` says why); as JSON, or"
        " the payment page saying so.",
        "content": answer(ActionResult, [JSON, HTML]),
    }
    return documented(
        op_id,
        summary,
        params=[ID_PARAM],
        ok={
            200: (ActionResult, "Done (Accept: application/json)."),
            303: _see_other("done, the payment page; or, signed out, the login form"),
        },
        problems=_FORM | {401: _SIGNED_OUT, 403: _CSRF, 404: _NO_SESSION, 409: refused},
    )


@_action("postAppPayByIdConfirm", "Pay with the customer's card, once.")
async def confirm(request: web.Request) -> web.StreamResponse:
    """POST /app/pay/{id}/confirm: pay with the customer's card (once, whatever the clicks)."""
    return await _act(request, "confirm")


@_action("postAppPayByIdCancel", "Cancel the purchase.")
async def cancel(request: web.Request) -> web.StreamResponse:
    """POST /app/pay/{id}/cancel: cancel the purchase; nothing is charged."""
    return await _act(request, "cancel")


def _history_item(request: web.Request, p: CustomerPayment) -> HistoryItem:
    language = pages.lang(request)
    refunds = [
        HistoryRefund(
            amount=r["amount"],
            amount_text=pages.amount_text(r["amount"], r["currency"], language),
            status=r["status"],
            created_text=r["requested_at"].strftime("%Y-%m-%d %H:%M"),
        )
        for r in p.refunds
    ]
    return HistoryItem.of(
        p,
        amount_text=pages.amount_text(p.amount, p.currency, language),
        created_text=p.requested_at.strftime("%Y-%m-%d %H:%M"),
        refunds=refunds,
    )


async def _history(request: web.Request) -> History:
    customer, _ = await _customer(request)
    paid = await request.app[state.REPO].checkout.customer_payments(customer.id, HISTORY_LIMIT)
    return History(items=[_history_item(request, p) for p in paid])


@documented(
    "getAppHistory",
    "The usage history page.",
    ok={200: page("The page."), 303: _TO_LOGIN},
)
async def history_page(request: web.Request) -> web.Response:
    """GET /app/history: the customer's payments across merchants, newest first."""
    shown = (await _history(request)).model_dump(mode="json", by_alias=True)
    return pages.render(request, "history", shown)


@documented(
    "getAppApiHistory",
    "The usage history.",
    ok={200: (History, "The items.")},
    problems={401: _SIGNED_OUT},
)
async def history_json(request: web.Request) -> web.Response:
    """GET /app/api/history: the same as JSON."""
    return responses.send(await _history(request))


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
