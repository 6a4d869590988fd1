"""The operators' console (role operator, never a merchant's): recovery of payments the
engine could not finish, merchants (list, create, suspend), payments across merchants, and
the audit log. Every action goes through engine/recovery, which writes its audit row in the
same transaction as the change; the operator is named by the user's email.
"""

from __future__ import annotations

import re

from aiohttp import web

from api import auth, state
from api.backoffice import context
from api.backoffice.context import PREFIX, PageError
from engine import recovery

_TID = re.compile(r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$")
_ID = re.compile(r"^[0-9]{1,18}$")
PAGE = 100


def _operator(request: web.Request) -> str:
    return context.user(request).email


def _tid(request: web.Request) -> str:
    tid = request.match_info["tid"]
    if not _TID.match(tid):
        raise PageError(404, "Not Found", f"no payment {tid[:40]!r}")
    return tid


def _after(request: web.Request) -> int:
    raw = request.query.get("after", "")
    if raw and not _ID.match(raw):
        raise PageError(422, "Unprocessable Content", "after: an id")
    return int(raw or 0)


async def recovery_page(request: web.Request) -> web.Response:
    """GET /backoffice/console/recovery: UNRESOLVED payments, or only the parked ones."""
    parked = request.query.get("parked") == "1"
    rows = await recovery.unresolved(
        request.app[context.RECOVERY],
        after_id=_after(request),
        limit=PAGE + 1,
        parked=True if parked else None,
    )
    return context.render(
        request,
        "console_recovery.html",
        {
            "rows": rows[:PAGE],
            "parked": parked,
            "next_after": rows[PAGE - 1].id if len(rows) > PAGE else None,
            "done": request.query.get("done", "")[:60],
            # Signed callbacks that came after their payment ended the other way (Atom
            # charged a payment we had expired): for a person to settle at the provider.
            "late": await request.app[state.REPO].payments.late_callbacks(PAGE),
        },
    )


def _back(done: str) -> web.HTTPSeeOther:
    return context.redirect("/console/recovery", {"done": done})


async def inquire(request: web.Request) -> web.Response:
    """POST /backoffice/console/payments/{tid}/inquire: due now; the next pass asks."""
    tid = _tid(request)
    reason = context.field(request, "reason", required=False, limit=1000) or None
    await recovery.inquire_now(request.app[context.RECOVERY], tid, _operator(request), reason)
    request.app[state.WAKERS].payments.poke()
    raise _back(f"inquiring {tid}")


async def resolve(request: web.Request) -> web.Response:
    """POST /backoffice/console/payments/{tid}/resolve: SUCCESS or FAILED, reason required."""
    tid = _tid(request)
    status = context.field(request, "status", limit=10)
    reason = context.field(request, "reason", limit=1000)
    final = await recovery.resolve(
        request.app[context.RECOVERY], tid, status, reason, _operator(request)
    )
    request.app[state.WAKERS].webhooks.poke()
    raise _back(f"{tid} resolved {final.value}")


async def release(request: web.Request) -> web.Response:
    """POST /backoffice/console/recovery/release: parked payments of a provider and mode."""
    provider = context.field(request, "provider", limit=40)
    mode = context.field(request, "mode", limit=10)
    reason = context.field(request, "reason", required=False, limit=1000) or None
    released = await recovery.release_parked(
        request.app[context.RECOVERY],
        _operator(request),
        provider=provider,
        mode=mode,
        reason=reason,
    )
    request.app[state.WAKERS].payments.poke()
    raise _back(f"released {len(released)}")


async def merchants_page(request: web.Request) -> web.Response:
    """GET /backoffice/console/merchants."""
    search = request.query.get("q", "").strip() or None
    rows = await recovery.list_merchants(
        request.app[context.RECOVERY], after_id=_after(request), limit=PAGE + 1, search=search
    )
    return context.render(
        request,
        "console_merchants.html",
        {
            "rows": rows[:PAGE],
            "q": search or "",
            "next_after": rows[PAGE - 1].id if len(rows) > PAGE else None,
            "created": None,
            "done": request.query.get("done", "")[:60],
        },
    )


async def create_merchant(request: web.Request) -> web.Response:
    """POST /backoffice/console/merchants: a merchant and its first test key (shown once)."""
    mid = context.field(request, "mid", limit=64)
    name = context.field(request, "name", limit=200)
    created = await recovery.create_merchant(
        request.app[context.RECOVERY],
        request.app[state.REPO],
        request.app[state.SETTINGS].api_key_secret,
        mid,
        name,
        _operator(request),
        mode="test",
    )
    rows = await recovery.list_merchants(request.app[context.RECOVERY], limit=PAGE)
    return context.render(
        request,
        "console_merchants.html",
        {"rows": rows, "q": "", "next_after": None, "created": created, "done": ""},
        201,
    )


async def suspend(request: web.Request) -> web.Response:
    """POST /backoffice/console/merchants/{mid}/suspend (or /resume): keys then get 401."""
    mid = request.match_info["mid"][:64]
    resume = request.path.endswith("/resume")
    reason = context.field(request, "reason", required=not resume, limit=1000)
    await recovery.suspend(
        request.app[context.RECOVERY], mid, _operator(request), reason, suspended=not resume
    )
    request.app[auth.CACHE].clear()  # its keys stop (or start) working here at once
    raise context.redirect(
        "/console/merchants", {"done": f"{mid} {'resumed' if resume else 'suspended'}"}
    )


async def payments_page(request: web.Request) -> web.Response:
    """GET /backoffice/console/payments?q=: payments of any merchant by tid, order id or mid."""
    text = request.query.get("q", "").strip()
    rows = await recovery.search_payments(request.app[context.RECOVERY], text) if text else []
    return context.render(request, "console_payments.html", {"rows": rows, "q": text})


async def audit_page(request: web.Request) -> web.Response:
    """GET /backoffice/console/audit: every operator action, newest first."""
    target = request.query.get("target", "").strip() or None
    page = await recovery.audit_log(
        request.app[context.RECOVERY], request.query.get("after") or None, 50, target=target
    )
    return context.render(
        request,
        "console_audit.html",
        {"rows": page.rows, "next_cursor": page.next_cursor, "target": target or ""},
    )


async def home(request: web.Request) -> web.Response:
    """GET /backoffice/console: recovery first."""
    raise context.redirect("/console/recovery")


def add_routes(app: web.Application) -> None:
    """Mount the operators' console."""
    c = f"{PREFIX}/console"
    app.add_routes(
        [
            web.get(c, home),
            web.get(f"{c}/recovery", recovery_page),
            web.post(f"{c}/recovery/release", release),
            web.post(f"{c}/payments/{{tid}}/inquire", inquire),
            web.post(f"{c}/payments/{{tid}}/resolve", resolve),
            web.get(f"{c}/merchants", merchants_page),
            web.post(f"{c}/merchants", create_merchant),
            web.post(f"{c}/merchants/{{mid}}/suspend", suspend),
            web.post(f"{c}/merchants/{{mid}}/resume", suspend),
            web.get(f"{c}/payments", payments_page),
            web.get(f"{c}/audit", audit_page),
        ]
    )
