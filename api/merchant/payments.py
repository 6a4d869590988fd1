"""Handlers of the Hamster PG contract: parse, call the engine, respond."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from aiohttp import web

from api import auth, models, problems, responses, state
from api import body as request_body
from api.operations import (
    BAD_JSON,
    MAX_PAGE,
    PAGING,
    TID_PARAM,
    TOO_LARGE,
    UNAVAILABLE,
    documented,
    path_id,
    too_many,
)
from api.schemas.common import MAX_BIGINT, TID
from api.schemas.payments import (
    SEED_EXAMPLE,
    DeadLetterPage,
    Health,
    PaymentAck,
    PaymentLookup,
    PaymentWebhooks,
    RedeliverAccepted,
    TriggerAccepted,
    UnresolvedPage,
    UnresolvedPayment,
    WebhookDelivery,
)
from engine import errors
from engine.models import NewPayment, Payment, Status
from engine.payments import intake, trigger


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


Row = TypeVar("Row", bound=_Identified)

# A bigint in ASCII digits (str.isdigit() also accepts "²" and other digits int() refuses).
_BIGINT = re.compile(r"^[0-9]{1,19}$")
# Another merchant's payment is not found either: whether it exists does not leak.
NOT_FOUND = "This merchant has no payment with this transaction id."
_BAD_PAGING = "`after` or `limit` is not an integer in range."
# Links say where a response's ids go next (and let a fuzzer reach real payments).
_BY_TID = {
    op: {"operationId": op, "parameters": {"tid": "$response.body#/transactionId"}}
    for op in ("getTransaction", "getTransactionWebhooks", "triggerWebhook")
}


@documented(
    "createPayment",
    "Accept a payment: 202 once its PENDING row is committed.",
    body=models.PaymentRequest,
    example=SEED_EXAMPLE,
    ok={
        202: (PaymentAck, "Accepted: a new payment, PENDING."),
        200: (PaymentAck, "A replay: the same request for the same order."),
    },
    links={202: _BY_TID},
    problems={
        400: BAD_JSON,
        408: "The body did not arrive in time.",
        403: "echo.mid names another merchant than the API key's.",
        409: "The order was already paid for with another request.",
        413: TOO_LARGE,
        422: "A field is missing or invalid (`field` names it), or `webhookUrl`"
        " is not one of the merchant's endpoints in the key's mode.",
        503: UNAVAILABLE,
    },
)
async def create_payment(request: web.Request) -> web.Response:
    """POST /api/payments (or /api/payment): 202 once the PENDING row is stored; 200 if replayed."""
    settings = request.app[state.SETTINGS]
    req = await request_body.read_model(
        request, settings, models.PaymentRequest, context={"max_amount": settings.max_amount}
    )
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
    payment, created = accepted.payment, accepted.created
    if created:
        request.app[state.WAKERS].payments.poke()
    # The seed's 202 echoes what was sent, key order included.
    body = PaymentAck.of_payment(
        payment, created=created, echo=req.echo if created else payment.echo
    )
    return responses.send(body, 202 if created else 200)


@documented(
    "getTransaction",
    "The seed's lookup body.",
    params=[TID_PARAM],
    ok={200: (PaymentLookup, "The payment.")},
    problems={404: NOT_FOUND, 503: UNAVAILABLE},
)
async def get_transaction(request: web.Request) -> web.Response:
    """GET /api/payments/{tid} (or /api/payment/transaction/{tid}): the seed's lookup body."""
    payment = await payment_in_path(request)
    return responses.send(PaymentLookup.of(payment))


async def payment_in_path(request: web.Request) -> Payment:
    """The caller's payment named in the path; 404 for anyone else's (existence never leaks)."""
    tid = request.match_info["tid"]
    who = auth.caller(request)
    repo = request.app[state.REPO]
    payment = await repo.payments.payment_by_tid(tid, who.mid, who.mode) if TID.match(tid) else None
    if payment is None:
        raise errors.PaymentNotFound(tid)
    return payment


@documented(
    "getTransactionWebhooks",
    "A payment's webhook deliveries, by id.",
    params=[TID_PARAM, *PAGING],
    ok={200: (PaymentWebhooks, "One page, oldest first.")},
    problems={404: NOT_FOUND, 422: _BAD_PAGING, 503: UNAVAILABLE},
)
async def transaction_webhooks(request: web.Request) -> web.Response:
    """GET /api/payments/{tid}/webhooks?after=&limit=: a payment's deliveries."""
    payment = await payment_in_path(request)
    tid = payment.tid
    after, limit = _paging(request)
    deliveries = await request.app[state.REPO].deliveries.deliveries_of(payment.id, after, limit)
    return responses.send(
        PaymentWebhooks(
            tid=tid,
            deliveries=[WebhookDelivery.of(d, tid=tid) for d in deliveries],
            next=_next(deliveries, limit),
        )
    )


@documented(
    "triggerWebhook",
    "Settle a payment by hand, or send its final webhook again.",
    params=[
        TID_PARAM,
        {
            "name": "status",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": ["SUCCESS", "FAILED"]},
        },
    ],
    ok={202: (TriggerAccepted, "Settled, or the webhook queued again.")},
    problems={
        403: "Settling a payment by hand needs a test key (sk_test_).",
        404: NOT_FOUND,
        409: "The payment is final with the other status, or a worker has"
        " it (PROCESSING) or lost track of it (UNRESOLVED): the provider"
        " may have moved money, so only a PENDING payment is settled by"
        " hand; or it kept changing. `currentStatus` says which.",
        422: "`status` is missing or not SUCCESS/FAILED.",
        429: too_many(
            "Its webhook was queued too often in the resend window (/problems/resend-limited)."
        ),
        503: UNAVAILABLE,
    },
)
async def trigger_webhook(request: web.Request) -> web.Response:
    """POST /api/payments/{tid}/webhook-trigger?status=SUCCESS|FAILED (and the seed's path)."""
    tid = request.match_info["tid"]
    raw = request.query.get("status")
    if raw not in (Status.SUCCESS.value, Status.FAILED.value):
        raise problems.validation("status", "must be SUCCESS or FAILED (query parameter)")
    if not TID.match(tid):
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
    return responses.send(
        TriggerAccepted(tid=tid, status=raw, action=action, webhook="queued"), 202
    )


def _paging(request: web.Request) -> tuple[int, int]:
    """`after` and `limit` of a paged list."""
    return (
        _int_query(request, "after", 0, 0, MAX_BIGINT),
        _int_query(request, "limit", 100, 1, MAX_PAGE),
    )


async def _page(
    request: web.Request, fetch: Callable[[str, str, int, int], Awaitable[Sequence[Row]]]
) -> tuple[Sequence[Row], int | None]:
    """One page of the caller's rows in its mode, by id (`after`, `limit` from the query), and
    the `after` of the next page: None after the last."""
    after, limit = _paging(request)
    who = auth.caller(request)
    rows = await fetch(who.mid, who.mode, after, limit)
    return rows, _next(rows, limit)


def _next(rows: Sequence[_Identified], limit: int) -> int | None:
    """The `after` of the page past a full one; None after the last."""
    return rows[-1].id if len(rows) == limit else None


def _int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if not raw:  # `?after=&limit=`, as a template pasted unfilled, means "not given"
        return default
    if not _BIGINT.match(raw) or not lo <= int(raw) <= hi:
        raise problems.validation(name, f"must be an integer from {lo} to {hi}")
    return int(raw)


@documented(
    "listDeadWebhooks",
    "Deliveries that used up their attempts, by id.",
    params=PAGING,
    ok={200: (DeadLetterPage, "One page.")},
    links={
        200: {
            "redeliverWebhook": {
                "operationId": "redeliverWebhook",
                "parameters": {"id": "$response.body#/deliveries/0/id"},
            }
        }
    },
    problems={422: _BAD_PAGING, 503: UNAVAILABLE},
)
async def dead_webhooks(request: web.Request) -> web.Response:
    """GET /api/webhooks/dead?after=&limit=: deliveries that used up their attempts."""
    dead, after = await _page(request, request.app[state.REPO].deliveries.dead_deliveries)
    return responses.send(
        DeadLetterPage(deliveries=[WebhookDelivery.of(d) for d in dead], next=after)
    )


@documented(
    "listUnresolvedPayments",
    "Payments whose outcome is not known, by id.",
    params=PAGING,
    ok={200: (UnresolvedPage, "One page.")},
    problems={422: _BAD_PAGING, 503: UNAVAILABLE},
)
async def unresolved_payments(request: web.Request) -> web.Response:
    """GET /api/payments/unresolved?after=&limit=: payments whose outcome is not known."""
    rows, after = await _page(request, request.app[state.REPO].payments.unresolved)
    return responses.send(
        UnresolvedPage(payments=[UnresolvedPayment.of(p) for p in rows], next=after)
    )


@documented(
    "redeliverWebhook",
    "Send a DEAD delivery again, with a fresh attempt budget.",
    params=[path_id("id", minimum=0)],
    ok={202: (RedeliverAccepted, "PENDING again.")},
    problems={404: "This merchant has no DEAD delivery with this id.", 503: UNAVAILABLE},
)
async def redeliver(request: web.Request) -> web.Response:
    """POST /api/webhooks/{id}/redeliver: send a DEAD delivery again, with fresh attempts."""
    raw = request.match_info["id"]
    if not _BIGINT.match(raw) or int(raw) > MAX_BIGINT:
        raise errors.DeliveryNotFound(0)
    who = auth.caller(request)
    if not await request.app[state.REPO].deliveries.redeliver(int(raw), who.mid, who.mode):
        raise errors.DeliveryNotFound(int(raw))
    return responses.send(RedeliverAccepted(id=int(raw), status="PENDING"), 202)


@documented(
    "health",
    "200 when the database answers.",
    ok={200: (Health, "Healthy.")},
    problems={503: UNAVAILABLE},
)
async def health(request: web.Request) -> web.Response:
    """GET /health: 200 when the database answers."""
    repo = request.app[state.REPO]
    try:
        await repo.pool.fetchval("SELECT 1")
    except Exception as exc:
        raise errors.DatabaseUnavailable() from exc
    return responses.send(Health(ok=True))


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


ROUTES = [
    # Each under its resource path and its seed alias.
    *(route(p, handler) for route, path, seed, handler in RESOURCE_ROUTES for p in (path, seed)),
    web.get("/api/webhooks/dead", dead_webhooks),
    web.post("/api/webhooks/{id}/redeliver", redeliver),
    web.get("/health", health),
]
