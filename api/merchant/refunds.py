"""Cancel and refunds over HTTP: parse, call the engine, respond."""

from __future__ import annotations

import re

from aiohttp import web

from api import auth, body, problems, responses, state
from api.merchant.payments import NOT_FOUND
from api.operations import BAD_JSON, TID_PARAM, TOO_LARGE, UNAVAILABLE, documented
from api.schemas.common import TID
from api.schemas.payments import PaymentLookup
from api.schemas.refunds import REFUND_ID_PATTERN, PaymentRefunds, Refund, RefundRequest
from engine import errors
from engine.payments import intake
from engine.refunds import accept

_REFUND_ID = re.compile(REFUND_ID_PATTERN)
_IDEMPOTENCY_KEY_PARAM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "The same key again answers with the same refund (200).",
    "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
}
# An Idempotency-Key: printable ASCII, as most payment APIs accept.
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _tid(request: web.Request) -> str:
    tid = request.match_info["tid"]
    if not TID.match(tid):
        raise errors.PaymentNotFound(tid)
    return tid


@documented(
    "cancelPayment",
    "A PENDING payment becomes CANCELED.",
    params=[TID_PARAM],
    ok={200: (PaymentLookup, "Canceled.")},
    problems={
        404: NOT_FOUND,
        409: "The payment is past PENDING (or may have been charged).",
        503: UNAVAILABLE,
    },
)
async def cancel(request: web.Request) -> web.Response:
    """POST /api/payments/{tid}/cancel: a PENDING payment becomes CANCELED; else 409."""
    who = auth.caller(request)
    payment = await accept.cancel(
        request.app[state.REPO], _tid(request), who.mid, who.mode, who.actor
    )
    return responses.send(PaymentLookup.of(payment))


@documented(
    "createRefund",
    "Give back (part of) a captured payment: 202 once accepted.",
    params=[TID_PARAM, _IDEMPOTENCY_KEY_PARAM],
    body=RefundRequest,
    ok={
        202: (Refund, "Accepted: REFUND_PENDING."),
        200: (Refund, "A replay: the refund of this Idempotency-Key."),
    },
    problems={
        400: BAD_JSON,
        404: NOT_FOUND,
        409: "Not refundable: not captured, more than is left, or the "
        "Idempotency-Key was used for another request.",
        413: TOO_LARGE,
        422: "The Idempotency-Key or a field is missing or invalid.",
        503: UNAVAILABLE,
    },
)
async def create_refund(request: web.Request) -> web.Response:
    """POST /api/payments/{tid}/refunds with an Idempotency-Key: 202 once accepted."""
    key = request.headers.get("Idempotency-Key")
    if key is None or not _IDEMPOTENCY_KEY.match(key):
        raise problems.validation(
            "Idempotency-Key", "send an Idempotency-Key header of 1-255 printable characters"
        )
    req = await body.model_of(request, RefundRequest)
    tid = _tid(request)
    who = auth.caller(request)
    digest = intake.request_digest({"tid": tid, "amount": req.amount, "reason": req.reason})
    result = await accept.request_refund(
        request.app[state.REPO],
        request.app[state.SNOWFLAKE],
        tid=tid,
        mid=who.mid,
        mode=who.mode,
        amount=req.amount,
        reason=req.reason,
        key=key,
        digest=digest,
        actor=who.actor,
    )
    if result.created:
        request.app[state.WAKERS].refunds.poke()
    return responses.send(Refund.of(result.refund), 202 if result.created else 200)


@documented(
    "listRefunds",
    "A payment's refunds, oldest first.",
    params=[TID_PARAM],
    ok={200: (PaymentRefunds, "The refunds.")},
    problems={404: NOT_FOUND, 503: UNAVAILABLE},
)
async def list_refunds(request: web.Request) -> web.Response:
    """GET /api/payments/{tid}/refunds: the payment's refunds, oldest first."""
    tid = _tid(request)
    who = auth.caller(request)
    repo = request.app[state.REPO]
    found = await repo.refunds.refunds_of(tid, who.mid, who.mode)
    if not found and await repo.payments.payment_by_tid(tid, who.mid, who.mode) is None:
        raise errors.PaymentNotFound(tid)
    return responses.send(PaymentRefunds(tid=tid, refunds=[Refund.of(r) for r in found]))


@documented(
    "getRefund",
    "One refund.",
    params=[{"name": "refund_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    ok={200: (Refund, "The refund.")},
    problems={404: "This merchant has no refund with this id.", 503: UNAVAILABLE},
)
async def get_refund(request: web.Request) -> web.Response:
    """GET /api/refunds/{refundId}: one refund."""
    refund_id = request.match_info["refund_id"]
    found = None
    if _REFUND_ID.match(refund_id):
        who = auth.caller(request)
        found = await request.app[state.REPO].refunds.refund(refund_id, who.mid, who.mode)
    if found is None:
        raise problems.Problem(
            404, "Not Found", f"no refund {refund_id!r}", slug="refund-not-found"
        )
    return responses.send(Refund.of(found))


ROUTES = [
    web.post("/api/payments/{tid}/cancel", cancel),
    web.post("/api/payments/{tid}/refunds", create_refund),
    web.get("/api/payments/{tid}/refunds", list_refunds),
    web.get("/api/refunds/{refund_id}", get_refund),
]
