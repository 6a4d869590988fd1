"""A merchant's transaction history: each payment's timeline, and one listing of everything.

The listing is engine/reports' (the back office's payments page and its CSV export list the
same rows for the same filter); this module reads its query parameters and answers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api import auth, problems, responses, state
from api.merchant import payments
from api.operations import TID_PARAM, UNAVAILABLE, documented
from api.schemas.common import MAX_BIGINT
from api.schemas.history import HistoryItem, HistoryPage, PaymentEvent, PaymentEvents
from engine import errors, money, reports
from engine.reports.query import KINDS, MAX_LIMIT, MAX_SEARCH, STATUSES, PaymentQuery
from engine.store.reports import ReportsStore

DEFAULT_LIMIT = 50
_INTEGER = re.compile(r"^[0-9]{1,19}$")
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


def _one_or_more(values: frozenset[str]) -> str:
    """A pattern for a comma-separated list of `values`."""
    one = "|".join(sorted(values))
    return f"^({one})(,({one}))*$"


def _query(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False}
    return param | ({"description": description} if description else {}) | {"schema": schema}


_PARAMS = [
    _query(
        "kind",
        {"type": "string", "pattern": _one_or_more(KINDS)},
        "Only these kinds, comma-separated.",
    ),
    _query(
        "status",
        {"type": "string", "pattern": _one_or_more(STATUSES)},
        "Only these statuses (of payments or refunds), comma-separated.",
    ),
    _query(
        "from",
        {"type": "string", "format": "date-time"},
        "createdAt at or after this instant (with a UTC offset).",
    ),
    _query(
        "to",
        {"type": "string", "format": "date-time"},
        "createdAt before this instant; later than `from`, else 422.",
    ),
    _query("minAmount", {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT}),
    _query(
        "maxAmount",
        {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT},
        "Not less than `minAmount`, else 422.",
    ),
    _query(
        "q",
        {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH},
        "A tid or order id exactly, or a prefix of the order id or customer id, or of the order"
        " name (any case).",
    ),
    _query(
        "currency",
        {"type": "string", "enum": sorted(money.currencies())},
        "Only items in this ISO 4217 currency.",
    ),
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    _query(
        "cursor",
        {"type": "string"},
        "The previous page's `next`, unchanged (anything else is 422).",
    ),
]


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


def _payment_query(request: web.Request) -> PaymentQuery:
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


@documented(
    "listHistory",
    "The merchant's payments, cancels and refunds, newest first.",
    params=_PARAMS,
    ok={200: (HistoryPage, "One page.")},
    problems={422: "A filter, `limit` or `cursor` is not valid.", 503: UNAVAILABLE},
)
async def list_history(request: web.Request) -> web.Response:
    """GET /api/payments: the caller's payments, cancels and refunds, newest first.

    Optional, combinable filters: kind and status (one or more, comma-separated); from and to
    (ISO 8601 with an offset; half-open [from, to) on createdAt; no default window);
    minAmount and maxAmount (inclusive); currency; q, a tid or order id exactly, or a prefix
    of the order id or of the customer id (case-sensitive) or of the order name
    (case-insensitive). limit is 1..200 (default 50); cursor is the previous page's `next`,
    which is null on the last page.
    """
    who = auth.caller(request)
    secret = request.app[state.SETTINGS].api_key_secret
    try:
        query = _payment_query(request)
        limit = _integer(request, "limit")
        found = await reports.page(
            ReportsStore(request.app[state.REPO].pool, lists=request.app[state.LISTS]),
            who.mid,
            who.mode,
            query,
            _one(request, "cursor"),
            DEFAULT_LIMIT if limit is None else limit,
            secret=secret,
        )
    except errors.InvalidField as exc:
        raise problems.validation(PARAMS.get(exc.field, exc.field), exc.message) from None
    return responses.send(
        HistoryPage(items=[HistoryItem.of(i) for i in found.rows], next=found.next_cursor)
    )


@documented(
    "getPaymentEvents",
    "Every state change of a payment and its refunds, oldest first.",
    params=[TID_PARAM],
    ok={200: (PaymentEvents, "The events.")},
    problems={404: payments.NOT_FOUND, 503: UNAVAILABLE},
)
async def payment_events(request: web.Request) -> web.Response:
    """GET /api/payments/{tid}/events: every state change of one payment, oldest first."""
    payment = await payments.payment_in_path(request)
    events = await request.app[state.REPO].history.payment_events(payment.id)
    return responses.send(
        PaymentEvents(tid=payment.tid, events=[PaymentEvent.of(e) for e in events])
    )


ROUTES = [
    web.get("/api/payments", list_history),
    web.get("/api/payments/{tid}/events", payment_events),
]
