"""Handlers of the Hamster PG contract: parse, call the engine, respond."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from api import auth, models, problems, responses, state
from api import body as request_body  # `body` is the response's name below
from engine import errors
from engine.models import DeliveryRecord, NewPayment, Payment, Status
from engine.payments import intake, trigger

# Shape of a tid; anything else cannot exist, so it is answered 404 without a query.
_TID = re.compile(r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$")
# A bigint in ASCII digits (str.isdigit() also accepts "²" and other digits int() refuses).
_BIGINT = re.compile(r"^[0-9]{1,19}$")
_MAX_BIGINT = 2**63 - 1
_MAX_PAGE = 500


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def _validation_problem(exc: ValidationError) -> problems.Problem:
    errs = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    return problems.validation(errs[0]["field"], errs[0]["message"], errs)


def ack(p: Payment, *, created: bool) -> dict[str, Any]:
    """The seed's 202 body (and, for a replay, the same body with the current status)."""
    return {
        "status": p.status.value,
        "code": "ACK_OK",
        "transactionId": p.tid,
        "amount": p.amount,
        "currency": p.currency,
        "echo": p.echo,
        "message": "Payment request received and processing"
        if created
        else "Payment request already received",
    }


def lookup(p: Payment) -> dict[str, Any]:
    """The seed's lookup body."""
    return {
        "tid": p.tid,
        "orderId": p.order_id,
        "amount": p.amount,
        "currency": p.currency,
        "status": p.status.value,
        "approvalNo": p.approval_no,
        "failReason": p.fail_reason,
        "requestedAt": responses.iso(p.requested_at),
        "processedAt": responses.iso(p.processed_at),
        "webhookSentAt": responses.iso(p.webhook_sent_at),
        "webhookResponseCode": p.webhook_response_code,
        "refundedAmount": p.refunded_amount,
    }


def _unresolved(p: Payment) -> dict[str, Any]:
    return lookup(p) | {
        "reason": p.unresolved_reason,
        "outcomeUnknownSince": responses.iso(p.outcome_unknown_since),
        "attempts": p.attempts,
        "nextAttemptAt": responses.iso(p.next_attempt_at)
        if p.next_attempt_at.year < 9999
        else None,
    }


def _delivery(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "eventId": d.event_id,
        "eventStatus": d.event_status,
        "tid": d.tid,
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts,
        "lastResponseCode": d.last_response_code,
        "lastError": d.last_error,
        "createdAt": responses.iso(d.created_at),
        "deliveredAt": responses.iso(d.delivered_at),
    }


async def create_payment(request: web.Request) -> web.Response:
    """POST /api/payments (or /api/payment): 202 once the PENDING row is stored; 200 if replayed."""
    settings = request.app[state.SETTINGS]
    data = await request_body.read_json(request, settings)
    if not isinstance(data, dict):
        raise problems.validation("body", "must be a JSON object")
    try:
        req = models.PaymentRequest.model_validate(
            data, context={"max_amount": settings.max_amount}
        )
    except ValidationError as exc:
        raise _validation_problem(exc) from None
    who = auth.caller(request)
    if "mid" in req.echo and req.echo["mid"] is not None and req.echo["mid"] != who.mid:
        raise problems.Problem(
            403,
            "Forbidden",
            "echo.mid names another merchant than the API key's",
            slug="merchant-mismatch",
            field="echo.mid",
        )
    currency = req.currency or settings.default_currency
    # The digest covers what was asked for, not what it resolved to: a replay still matches
    # after the merchant registers an endpoint. Naming the default is the same as naming none.
    asked = None if req.webhook_url == str(settings.default_webhook_url) else req.webhook_url
    endpoint_id = None
    if asked is not None:
        # Only the merchant's own endpoints of this mode: a url decides nothing by itself,
        # least of all which secret signs (the endpoint's, never another merchant's).
        endpoint_id = await request.app[state.REPO].endpoints.endpoint_by_url(
            who.mid, who.mode, asked
        )
        if endpoint_id is None:
            raise errors.UnknownWebhookUrl(asked)
    new = NewPayment(
        mid=who.mid,
        order_id=req.order_id,
        user_public_id=req.user_public_id,
        amount=req.amount,
        currency=currency,
        echo=req.echo,
        # Naming the operator's default receiver is naming none: the merchant's own endpoint
        # is used if it has one, and no merchant can pick the operator's secret by url.
        webhook_url=asked,
        request_digest=intake.request_digest(req.digest_fields(currency, asked)),
        provider=req.provider,
        order_name=req.order_name,
        actor=who.actor,
        mode="test" if who.is_test else "live",
        endpoint_id=endpoint_id,
    )
    accepted = await intake.accept(
        request.app[state.INSERTS],
        new,
        snowflake=request.app[state.SNOWFLAKE],
        tid_prefix=settings.tid_prefix,
        default_webhook_url=str(settings.default_webhook_url),
    )
    body = ack(accepted.payment, created=accepted.created)
    if accepted.created:
        request.app[state.WAKERS].payments.poke()
        # The seed's 202 echoes what was sent, key order included.
        body["echo"] = req.echo
    return responses.json_response(body, 202 if accepted.created else 200)


async def get_transaction(request: web.Request) -> web.Response:
    """GET /api/payments/{tid} (or /api/payment/transaction/{tid}): the seed's lookup body."""
    payment = await payment_in_path(request)
    return responses.json_response(lookup(payment))


async def payment_in_path(request: web.Request) -> Payment:
    """The caller's payment named in the path; 404 for anyone else's (existence never leaks)."""
    tid = request.match_info["tid"]
    who = auth.caller(request)
    repo = request.app[state.REPO]
    payment = (
        await repo.payments.payment_by_tid(tid, who.mid, who.mode) if _TID.match(tid) else None
    )
    if payment is None:
        raise errors.PaymentNotFound(tid)
    return payment


async def transaction_webhooks(request: web.Request) -> web.Response:
    """GET /api/payments/{tid}/webhooks?after=&limit=: a payment's deliveries."""
    payment = await payment_in_path(request)
    tid = payment.tid
    after = _int_query(request, "after", 0, 0, _MAX_BIGINT)
    limit = _int_query(request, "limit", 100, 1, _MAX_PAGE)
    deliveries = await request.app[state.REPO].deliveries.deliveries_of(payment.id, after, limit)
    return responses.json_response(
        {
            "tid": tid,
            "deliveries": [_delivery(d) | {"tid": tid} for d in deliveries],
            "next": deliveries[-1].id if len(deliveries) == limit else None,
        }
    )


async def trigger_webhook(request: web.Request) -> web.Response:
    """POST /api/payments/{tid}/webhook-trigger?status=SUCCESS|FAILED (and the seed's path)."""
    tid = request.match_info["tid"]
    raw = request.query.get("status")
    if raw not in (Status.SUCCESS.value, Status.FAILED.value):
        raise problems.validation("status", "must be SUCCESS or FAILED (query parameter)")
    if not _TID.match(tid):
        raise errors.PaymentNotFound(tid)
    who = auth.caller(request)
    settings = request.app[state.SETTINGS]
    action = await trigger.trigger(
        request.app[state.REPO],
        tid,
        Status(raw),
        mid=who.mid,
        mode=who.mode,
        actor=who.actor,
        resends_per_window=settings.webhook_resends_per_window,
        resend_window_seconds=settings.webhook_resend_window_seconds,
    )
    request.app[state.WAKERS].webhooks.poke()
    return responses.json_response(
        {"tid": tid, "status": raw, "action": action, "webhook": "queued"}, 202
    )


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if not raw:  # `?after=&limit=`, as a template pasted unfilled, means "not given"
        return default
    if not _BIGINT.match(raw) or not lo <= int(raw) <= hi:
        raise problems.validation(name, f"must be an integer from {lo} to {hi}")
    return int(raw)


async def dead_webhooks(request: web.Request) -> web.Response:
    """GET /api/webhooks/dead?after=&limit=: deliveries that used up their attempts."""
    after = _int_query(request, "after", 0, 0, _MAX_BIGINT)
    limit = _int_query(request, "limit", 100, 1, _MAX_PAGE)
    who = auth.caller(request)
    dead = await request.app[state.REPO].deliveries.dead_deliveries(who.mid, who.mode, after, limit)
    body: dict[str, Any] = {"deliveries": [_delivery(d) for d in dead]}
    body["next"] = dead[-1].id if len(dead) == limit else None
    return responses.json_response(body)


async def unresolved_payments(request: web.Request) -> web.Response:
    """GET /api/payments/unresolved?after=&limit=: payments whose outcome is not known."""
    after = _int_query(request, "after", 0, 0, _MAX_BIGINT)
    limit = _int_query(request, "limit", 100, 1, _MAX_PAGE)
    who = auth.caller(request)
    rows = await request.app[state.REPO].payments.unresolved(who.mid, who.mode, after, limit)
    body: dict[str, Any] = {"payments": [_unresolved(p) for p in rows]}
    body["next"] = rows[-1].id if len(rows) == limit else None
    return responses.json_response(body)


async def redeliver(request: web.Request) -> web.Response:
    """POST /api/webhooks/{id}/redeliver: send a DEAD delivery again, with fresh attempts."""
    raw = request.match_info["id"]
    if not _BIGINT.match(raw) or int(raw) > _MAX_BIGINT:
        raise errors.DeliveryNotFound(0)
    who = auth.caller(request)
    if not await request.app[state.REPO].deliveries.redeliver(int(raw), who.mid, who.mode):
        raise errors.DeliveryNotFound(int(raw))
    return responses.json_response({"id": int(raw), "status": "PENDING"}, 202)


async def health(request: web.Request) -> web.Response:
    """GET /health: 200 when the database answers."""
    repo = request.app[state.REPO]
    try:
        await repo.pool.fetchval("SELECT 1")
    except Exception as exc:
        raise errors.DatabaseUnavailable() from exc
    return responses.json_response({"ok": True})


# Each resource path under /api/payments, and the seed's path that stays as its alias: the
# same handler under both, so they answer exactly alike.
RESOURCE_ROUTES = [
    (web.post, "/api/payments", "/api/payment", create_payment),
    (web.get, "/api/payments/unresolved", "/api/payment/unresolved", unresolved_payments),
    (web.get, "/api/payments/{tid}", "/api/payment/transaction/{tid}", get_transaction),
    (
        web.get,
        "/api/payments/{tid}/webhooks",
        "/api/payment/transaction/{tid}/webhooks",
        transaction_webhooks,
    ),
    (
        web.post,
        "/api/payments/{tid}/webhook-trigger",
        "/api/payment/webhook/trigger/{tid}",
        trigger_webhook,
    ),
]
# The seed's path of each resource path.
SEED_ALIASES = {path: seed for _, path, seed, _ in RESOURCE_ROUTES}


def add_routes(app: web.Application) -> None:
    """Mount the contract's routes, each under its resource path and its seed alias."""
    for route, path, seed, handler in RESOURCE_ROUTES:
        app.add_routes([route(path, handler), route(seed, handler)])
    app.add_routes(
        [
            web.get("/api/webhooks/dead", dead_webhooks),
            web.post("/api/webhooks/{id}/redeliver", redeliver),
            web.get("/health", health),
        ]
    )
