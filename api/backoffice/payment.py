"""One payment: its facts, one timeline of everything that happened to it, and the actions
a merchant admin may take (cancel, refund, resend the webhook), each through the engine's
own functions, recorded with the user as actor.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from api import state
from api.backoffice import context
from api.backoffice.context import PREFIX, PageError
from engine import errors, reports
from engine.models import Payment, Status
from engine.payments import intake
from engine.refunds import accept

_TID = re.compile(r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$")
_AMOUNT = re.compile(r"^[0-9]{1,19}$")
_KEY = re.compile(r"^bo_[A-Za-z0-9_-]{16,64}$")
MAX_REFUND = 2**62
# What the timeline shows of a failed attempt's error.
EXCERPT = 300


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a payment's timeline, as the page shows it."""

    at: datetime
    kind: str
    actor: str
    summary: str
    detail: str = ""
    # A webhook attempt: what was sent and what came back (shown folded).
    request: str = ""
    response: str = ""


async def payment_of(request: web.Request) -> Payment:
    """The user's merchant's payment in the selected mode named in the path; 404 otherwise
    (another merchant's, or the other mode's, is as unknown as one that does not exist)."""
    mid, mode = context.merchant_scope(request)
    tid = request.match_info["tid"]
    found = None
    if _TID.match(tid):
        found = await request.app[state.REPO].payments.payment_by_tid(tid, mid, mode)
    if found is None:
        raise errors.PaymentNotFound(tid[:40])
    return found


def _line(e: reports.Entry, payment: Payment, money: Callable[[int, str], str]) -> Line:
    d = e.detail
    if e.kind == "webhook":
        answer = f"HTTP {d['responseCode']}" if d.get("responseCode") else (d.get("error") or "")
        headers = "\n".join(f"{k}: {v}" for k, v in (d.get("requestHeaders") or {}).items())
        body = d.get("requestBody")
        sent = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, indent=1)
        return Line(
            e.at,
            "webhook",
            e.actor,
            f"{d.get('eventId', '')} → {d.get('url', '')} (attempt {d.get('attempt', '?')})",
            str(answer)[:EXCERPT],
            request=f"{headers}\n\n{sent}".strip(),
            response=str(d.get("responseExcerpt") or "")[:EXCERPT],
        )
    change = f"{e.from_status or '-'} → {e.to_status}"
    if e.kind == "refund":
        detail = ""
        if d.get("amount") is not None and e.from_status is None:
            detail = (
                f"{money(int(d['amount']), str(d.get('currency', '')))} · {d.get('reason') or ''}"
            )
        return Line(e.at, "refund", e.actor, f"{e.refund_id}: {change}", detail)
    detail = ""
    if e.to_status == "FAILED" and payment.fail_reason:
        detail = payment.fail_reason
    elif e.to_status == "UNRESOLVED" and payment.unresolved_reason:
        detail = payment.unresolved_reason
    return Line(e.at, e.kind, e.actor, change, detail)


async def timeline(request: web.Request, payment: Payment) -> list[Line]:
    """State changes, cancel, refunds and every webhook attempt, oldest first (the engine's
    one timeline, engine/reports)."""
    mid, mode = context.merchant_scope(request)
    entries = await reports.timeline(request.app[context.REPORTS], mid, mode, payment.tid)
    money = context.money_of(request)
    return [_line(e, payment, money) for e in entries]


async def show(request: web.Request) -> web.Response:
    """GET /backoffice/payments/{tid}."""
    payment = await payment_of(request)
    refundable = payment.amount - payment.refund_reserved
    return context.render(
        request,
        "payment.html",
        {
            "p": payment,
            "entries": await timeline(request, payment),
            "refundable": refundable,
            "can_cancel": payment.status is Status.PENDING,
            "can_refund": payment.status in (Status.SUCCESS, Status.PARTIALLY_REFUNDED)
            and refundable > 0,
            "can_resend": payment.status in (Status.SUCCESS, Status.FAILED),
            "refund_key": f"bo_{secrets.token_urlsafe(18)}",
            "done": request.query.get("done", "")[:20],
        },
    )


def _back(payment: Payment, done: str) -> web.HTTPSeeOther:
    return context.redirect(f"/payments/{payment.tid}", {"done": done})


async def cancel(request: web.Request) -> web.Response:
    """POST /backoffice/payments/{tid}/cancel: PENDING -> CANCELED, else 409."""
    payment = await payment_of(request)
    mid, mode = context.merchant_scope(request)
    await accept.cancel(request.app[state.REPO], payment.tid, mid, mode, context.actor(request))
    raise _back(payment, "canceled")


def _refund_amount(request: web.Request) -> int:
    raw = context.field(request, "amount", limit=20)
    if not _AMOUNT.match(raw) or not 0 < int(raw) <= MAX_REFUND:
        raise PageError(422, "Unprocessable Content", "amount: a whole number of minor units > 0")
    return int(raw)


async def refund(request: web.Request) -> web.Response:
    """POST /backoffice/payments/{tid}/refund: amount and a required reason.

    The form carries an idempotency key drawn when it was shown, so a double submit makes one
    refund; the reason is stored with the refund and the user is its actor.
    """
    payment = await payment_of(request)
    mid, mode = context.merchant_scope(request)
    amount = _refund_amount(request)
    reason = context.field(request, "reason", limit=500)
    key = context.field(request, "key", limit=70)
    if not _KEY.match(key):
        raise PageError(422, "Unprocessable Content", "key: reload the page and try again")
    digest = intake.request_digest({"tid": payment.tid, "amount": amount, "reason": reason})
    result = await accept.request_refund(
        request.app[state.REPO],
        request.app[state.SNOWFLAKE],
        tid=payment.tid,
        mid=mid,
        mode=mode,
        amount=amount,
        reason=reason,
        key=key,
        digest=digest,
        actor=context.actor(request),
    )
    if result.created:
        request.app[state.WAKERS].refunds.poke()
    raise _back(payment, "refund")


async def resend(request: web.Request) -> web.Response:
    """POST /backoffice/payments/{tid}/resend: queue the outcome's webhook again."""
    payment = await payment_of(request)
    if payment.status not in (Status.SUCCESS, Status.FAILED):
        raise errors.StateConflict(
            payment.tid, payment.status.value, "only a SUCCESS or FAILED payment's webhook is sent"
        )
    mid, mode = context.merchant_scope(request)
    settings = request.app[state.SETTINGS]
    queued = await request.app[state.REPO].deliveries.enqueue_resend(
        payment.tid,
        mid,
        mode,
        payment.status,
        per_window=settings.webhook_resends_per_window,
        window=settings.webhook_resend_window_seconds,
    )
    if queued is None:  # it changed under us (a refund): show it as it is now
        raise errors.StateConflict(payment.tid, "CHANGED", "the payment changed; reload the page")
    request.app[state.WAKERS].webhooks.poke()
    raise _back(payment, "resent")


def add_routes(app: web.Application) -> None:
    """Mount the payment page and its actions."""
    app.add_routes(
        [
            web.get(f"{PREFIX}/payments/{{tid}}", show),
            web.post(f"{PREFIX}/payments/{{tid}}/cancel", cancel),
            web.post(f"{PREFIX}/payments/{{tid}}/refund", refund),
            web.post(f"{PREFIX}/payments/{{tid}}/resend", resend),
        ]
    )
