"""Cancel and refunds over HTTP: parse, call the engine, respond."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api import auth, body, models, problems, state
from api.merchant.payments import lookup
from engine import errors
from engine.models import Refund
from engine.payments import intake
from engine.refunds import accept

_TID = re.compile(r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$")
_REFUND_ID = re.compile(r"^RF[0-9A-Za-z]{11}$")
# An Idempotency-Key: printable ASCII, as most payment APIs accept.
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class RefundRequest(BaseModel):
    """POST /api/payments/{tid}/refunds: how much to give back, in minor units."""

    # An unknown member is refused, not ignored (a misspelt "reason" must not vanish).
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    # At most what any payment can hold; the payment's own remainder is checked by the engine.
    amount: int = Field(gt=0, le=2**62)
    reason: str | None = Field(default=None, min_length=1, max_length=500)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        return None if value is None else models.check_text(value)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def refund_body(r: Refund) -> dict[str, Any]:
    """A refund as the API shows it."""
    return {
        "refundId": r.public_id,
        "transactionId": r.tid,
        "amount": r.amount,
        "currency": r.currency,
        "reason": r.reason,
        "status": r.status.value,
        "refundNo": r.provider_refund_no,
        "failReason": r.fail_reason,
        "requestedAt": _iso(r.requested_at),
        "processedAt": _iso(r.processed_at),
    }


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body, ensure_ascii=False), content_type="application/json"
    )


def _tid(request: web.Request) -> str:
    tid = request.match_info["tid"]
    if not _TID.match(tid):
        raise errors.PaymentNotFound(tid)
    return tid


async def cancel(request: web.Request) -> web.Response:
    """POST /api/payments/{tid}/cancel: a PENDING payment becomes CANCELED; else 409."""
    who = auth.caller(request)
    payment = await accept.cancel(
        request.app[state.REPO], _tid(request), who.mid, who.mode, who.actor
    )
    return _json(lookup(payment))


async def create_refund(request: web.Request) -> web.Response:
    """POST /api/payments/{tid}/refunds with an Idempotency-Key: 202 once accepted."""
    key = request.headers.get("Idempotency-Key")
    if key is None or not _IDEMPOTENCY_KEY.match(key):
        raise problems.validation(
            "Idempotency-Key", "send an Idempotency-Key header of 1-255 printable characters"
        )
    data = await body.read_json(request, request.app[state.SETTINGS])
    if not isinstance(data, dict):
        raise problems.validation("body", "must be a JSON object")
    try:
        req = RefundRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise problems.validation(
            ".".join(str(p) for p in err["loc"]) or "body", err["msg"]
        ) from None
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
    return _json(refund_body(result.refund), 202 if result.created else 200)


async def list_refunds(request: web.Request) -> web.Response:
    """GET /api/payments/{tid}/refunds: the payment's refunds, oldest first."""
    tid = _tid(request)
    who = auth.caller(request)
    repo = request.app[state.REPO]
    found = await repo.refunds.refunds_of(tid, who.mid, who.mode)
    if not found and await repo.payments.payment_by_tid(tid, who.mid, who.mode) is None:
        raise errors.PaymentNotFound(tid)
    return _json({"transactionId": tid, "refunds": [refund_body(r) for r in found]})


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
    return _json(refund_body(found))


def add_routes(app: web.Application) -> None:
    """Mount the cancel and refund routes."""
    app.add_routes(
        [
            web.post("/api/payments/{tid}/cancel", cancel),
            web.post("/api/payments/{tid}/refunds", create_refund),
            web.get("/api/payments/{tid}/refunds", list_refunds),
            web.get("/api/refunds/{refund_id}", get_refund),
        ]
    )
