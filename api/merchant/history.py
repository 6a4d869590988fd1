"""A merchant's transaction history: each payment's timeline, and one listing of everything."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api import auth, problems, responses, state
from api.merchant import payments
from api.operations import TID_PARAM, UNAVAILABLE, documented
from api.schemas.common import MAX_BIGINT
from api.schemas.history import HistoryItem, HistoryPage, PaymentEvent, PaymentEvents
from engine.models import HistoryFilter, HistoryKey, HistoryKind, RefundStatus, Status

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# As long as the longest order name the intake accepts; a longer prefix matches nothing.
MAX_Q = 200
# What an item's status can be: a payment's, or a refund's.
STATUSES = frozenset(s.value for s in Status) | frozenset(s.value for s in RefundStatus)
KINDS = frozenset(k.value for k in HistoryKind)
_INTEGER = re.compile(r"^[0-9]{1,19}$")
_DUMPS = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


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
        {"type": "string", "minLength": 1, "maxLength": MAX_Q},
        "A prefix of the order id or customer id, or of the order name (any case).",
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # validate=True: characters outside the alphabet are an error, not silently skipped.
    padded = text.encode("ascii") + b"=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def _mac(secret: str, mid: str, payload: bytes) -> bytes:
    # A key of its own, derived from the server secret: a cursor tag is never a key hash.
    key = hmac.new(secret.encode(), b"history-cursor", hashlib.sha256).digest()
    return hmac.new(key, mid.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]


def encode_cursor(key: HistoryKey, mid: str, secret: str) -> str:
    """An opaque, signed cursor for the page after `key` (valid for merchant `mid` only)."""
    payload = _DUMPS([key.created_at.isoformat(), key.kind.value, key.id]).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, mid, payload))}"


def decode_cursor(raw: str, mid: str, secret: str) -> HistoryKey:
    """The position a cursor names; 422 for anything this API did not issue to `mid`."""
    try:
        body, dot, tag = raw.partition(".")
        payload = _unb64(body)
        if not dot or not hmac.compare_digest(_unb64(tag), _mac(secret, mid, payload)):
            raise ValueError("bad tag")
        at, kind, id_ = json.loads(payload)
        return HistoryKey(datetime.fromisoformat(at), HistoryKind(kind), int(id_))
    except (ValueError, TypeError, binascii.Error):
        raise problems.validation(
            "cursor", "is not a cursor this API returned (pass `next` unchanged)"
        ) from None


def _one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise problems.validation(name, "must be given at most once")
    return values[0] if values else None


def _choices(request: web.Request, name: str, allowed: frozenset[str]) -> frozenset[str] | None:
    given = request.query.getall(name, [])
    if not given:
        return None
    values = [v for raw in given for v in raw.split(",")]
    for v in values:
        if v not in allowed:
            raise problems.validation(
                name, f"{v!r} is not one of {', '.join(sorted(allowed))} (comma-separated)"
            )
    return frozenset(values)


def _integer(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    raw = _one(request, name)
    if raw is None:
        return None
    if not _INTEGER.match(raw) or not lo <= int(raw) <= hi:
        raise problems.validation(name, f"must be an integer from {lo} to {hi}")
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


def _search(request: web.Request) -> str | None:
    q = _one(request, "q")
    if q is None:
        return None
    if not 1 <= len(q) <= MAX_Q:
        raise problems.validation("q", f"must be 1 to {MAX_Q} characters")
    try:
        q.encode("utf-8")
    except UnicodeEncodeError:
        raise problems.validation("q", "must be valid Unicode") from None
    if "\x00" in q:
        raise problems.validation("q", "must not contain the NUL character")
    return q


def _filters(request: web.Request) -> HistoryFilter:
    kinds = _choices(request, "kind", KINDS)
    created_from = _instant(request, "from")
    created_to = _instant(request, "to")
    if created_from and created_to and created_from >= created_to:
        raise problems.validation("to", "must be later than from (the range is [from, to))")
    min_amount = _integer(request, "minAmount", 0, MAX_BIGINT)
    max_amount = _integer(request, "maxAmount", 0, MAX_BIGINT)
    if min_amount is not None and max_amount is not None and min_amount > max_amount:
        raise problems.validation("maxAmount", "must not be less than minAmount")
    return HistoryFilter(
        kinds=frozenset(HistoryKind) if kinds is None else frozenset(map(HistoryKind, kinds)),
        statuses=_choices(request, "status", STATUSES),
        created_from=created_from,
        created_to=created_to,
        min_amount=min_amount,
        max_amount=max_amount,
        q=_search(request),
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
    minAmount and maxAmount (inclusive); q, a prefix of the order id or of the customer id
    (case-sensitive) or of the order name (case-insensitive). limit is 1..200 (default 50);
    cursor is the previous page's `next`, which is null on the last page.
    """
    who = auth.caller(request)
    secret = request.app[state.SETTINGS].api_key_secret
    filters = _filters(request)
    limit = _integer(request, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
    raw_cursor = _one(request, "cursor")
    # A cursor is bound to the merchant and the mode it was issued for.
    scope = f"{who.mid}/{who.mode}"
    after = None if raw_cursor is None else decode_cursor(raw_cursor, scope, secret)
    # One row more than the page tells whether another page follows.
    rows = await request.app[state.REPO].history.page(who.mid, who.mode, filters, after, limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    return responses.send(
        HistoryPage(
            items=[HistoryItem.of(i) for i in page],
            next=encode_cursor(page[-1].key, scope, secret) if more else None,
        )
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
