"""A merchant's transaction history: each payment's timeline, and one listing of everything."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api import auth, problems, state
from api.merchant import payments
from engine import errors, reports
from engine.models import HistoryItem, PaymentEvent
from engine.reports.query import KINDS, PaymentQuery
from engine.store.reports import ReportsStore

DEFAULT_LIMIT = 50
_INTEGER = re.compile(r"^[0-9]{1,19}$")
_DUMPS = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
# PaymentQuery's field names as this API's query parameters.
PARAMS = {
    "kinds": "kind",
    "statuses": "status",
    "created_from": "from",
    "created_to": "to",
    "amount_min": "minAmount",
    "amount_max": "maxAmount",
    "search": "q",
}


def _one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise problems.validation(name, "must be given at most once")
    return values[0] if values else None


def _choices(request: web.Request, name: str) -> frozenset[str] | None:
    given = request.query.getall(name, [])
    if not given:
        return None
    return frozenset(v for raw in given for v in raw.split(","))


def _integer(request: web.Request, name: str) -> int | None:
    raw = _one(request, name)
    if raw is None:
        return None
    if not _INTEGER.match(raw):
        raise problems.validation(name, "must be a non-negative integer")
    return int(raw)


def _parse_instant(raw: str) -> datetime | None:
    candidates = [raw]
    if " " in raw:
        # An unencoded "+" of a UTC offset arrives as a space.
        candidates.append("+".join(raw.rsplit(" ", 1)))
    for text in candidates:
        try:
            value = datetime.fromisoformat(text)
            # Near year 1 or 9999 an offset can push the instant out of range.
            value.astimezone(UTC)
        except (ValueError, OverflowError):
            continue
        if value.utcoffset() is not None:
            return value
    return None


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = _one(request, name)
    if raw is None:
        return None
    value = _parse_instant(raw)
    if value is None:
        raise problems.validation(
            name, "must be an ISO 8601 date-time with a UTC offset, e.g. 2026-01-31T09:00:00Z"
        )
    return value


def _query(request: web.Request) -> PaymentQuery:
    kinds = _choices(request, "kind")
    return PaymentQuery(
        kinds=KINDS if kinds is None else kinds,
        statuses=_choices(request, "status"),
        created_from=_instant(request, "from"),
        created_to=_instant(request, "to"),
        amount_min=_integer(request, "minAmount"),
        amount_max=_integer(request, "maxAmount"),
        currency=_one(request, "currency"),
        search=_one(request, "q"),
    )


def _item(i: HistoryItem) -> dict[str, Any]:
    return {
        "kind": i.kind.value,
        "tid": i.tid,
        "refundId": i.refund_id,
        "orderId": i.order_id,
        "orderName": i.order_name,
        "customerId": i.user_public_id,
        "amount": i.amount,
        "currency": i.currency,
        "status": i.status,
        "createdAt": i.created_at.isoformat(),
    }


def _event(e: PaymentEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "from": e.from_status,
        "to": e.to_status,
        "actor": e.actor,
        "at": e.at.isoformat(),
        "refundId": e.refund_id,
    }


async def list_history(request: web.Request) -> web.Response:
    """GET /api/payments: the caller's payments, cancels and refunds, newest first.

    Optional, combinable filters: kind and status (one or more, comma-separated); from and to
    (ISO 8601 with an offset; half-open [from, to) on createdAt; no default window);
    minAmount and maxAmount (inclusive); currency; q, a tid or order id exactly, or a prefix
    of the order id or of the customer id (case-sensitive) or of the order name
    (case-insensitive). limit is 1..200 (default 50); cursor is the previous page's `next`,
    which is null on the last page. The back office's payments page and its CSV export list
    the same rows for the same filter (engine/reports).
    """
    who = auth.caller(request)
    secret = request.app[state.SETTINGS].api_key_secret
    try:
        query = _query(request)
        limit = _integer(request, "limit")
        found = await reports.page(
            ReportsStore(request.app[state.REPO].pool),
            who.mid,
            who.mode,
            query,
            _one(request, "cursor"),
            DEFAULT_LIMIT if limit is None else limit,
            secret=secret,
        )
    except errors.InvalidField as exc:
        raise problems.validation(PARAMS.get(exc.field, exc.field), exc.message) from None
    body = {"items": [_item(i) for i in found.rows], "next": found.next_cursor}
    return web.json_response(body, dumps=_DUMPS)


async def payment_events(request: web.Request) -> web.Response:
    """GET /api/payments/{tid}/events: every state change of one payment, oldest first."""
    payment = await payments.payment_in_path(request)
    events = await request.app[state.REPO].payment_events(payment.id)
    return web.json_response(
        {"tid": payment.tid, "events": [_event(e) for e in events]}, dumps=_DUMPS
    )


def add_routes(app: web.Application) -> None:
    """Mount the history's routes."""
    app.add_routes(
        [
            web.get("/api/payments", list_history),
            web.get("/api/payments/{tid}/events", payment_events),
        ]
    )
