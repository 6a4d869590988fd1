"""What a payments listing is narrowed to, checked once, and the opaque cursor of its pages.

The API (GET /api/payments), the back office's payments page and the CSV export all build a
PaymentQuery, so a bad value gets the same error (errors.InvalidField, naming the field)
wherever it came from, and every surface lists exactly the same rows for the same filter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from config import formats
from engine import errors
from engine.models import HistoryKey, HistoryKind, RefundStatus, Status

KINDS = frozenset(k.value for k in HistoryKind)
# What a line's status can be: a payment's, or a refund's.
STATUSES = frozenset(s.value for s in Status) | frozenset(s.value for s in RefundStatus)
# As long as the longest order name the intake accepts; a longer prefix matches nothing.
MAX_SEARCH = 200
MAX_AMOUNT = 2**63 - 1
MAX_LIMIT = 200


def _fail(name: str, message: str) -> errors.InvalidField:
    return errors.InvalidField(name, message)


def _check_instant(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise _fail(name, "must be a date-time with a UTC offset")


def _check_amount(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
        raise _fail(name, f"must be an integer amount in minor units from 0 to {MAX_AMOUNT}")


def _check_search(value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SEARCH:
        raise _fail("search", f"must be 1 to {MAX_SEARCH} characters")
    if "\x00" in value:
        raise _fail("search", "must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail("search", "must be valid Unicode") from None


def _check_choices(name: str, values: frozenset[str] | None, allowed: frozenset[str]) -> None:
    if values is None:
        return
    if not values:
        raise _fail(name, f"choose at least one of {', '.join(sorted(allowed))}")
    for v in sorted(values):
        if v not in allowed:
            raise _fail(name, f"{v!r} is not one of {', '.join(sorted(allowed))}")


@dataclass(frozen=True, slots=True)
class PaymentQuery:
    """A filter over a merchant's payments, cancels and refunds; None leaves that part open.

    kinds: payment (a payment not canceled), cancel (a CANCELED payment, at its cancel time),
    refund (a refund row). statuses: a payment's or a refund's. created_from <= created_at <
    created_to (aware). amount_min <= amount <= amount_max (minor units). currency: ISO 4217.
    search: a tid or order id exactly, or the prefix of an order id, of a customer id, or of
    an order name in any case. Every value is checked here; a bad one raises InvalidField.
    """

    kinds: frozenset[str] = field(default=KINDS)
    statuses: frozenset[str] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    currency: str | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        _check_choices("kinds", self.kinds, KINDS)
        _check_choices("statuses", self.statuses, STATUSES)
        _check_instant("created_from", self.created_from)
        _check_instant("created_to", self.created_to)
        if self.created_from and self.created_to and self.created_from >= self.created_to:
            raise _fail("created_to", "must be later than created_from (the range is [from, to))")
        _check_amount("amount_min", self.amount_min)
        _check_amount("amount_max", self.amount_max)
        if (
            self.amount_min is not None
            and self.amount_max is not None
            and self.amount_min > self.amount_max
        ):
            raise _fail("amount_max", "must not be less than amount_min")
        if self.currency is not None and (
            not isinstance(self.currency, str) or not formats.is_currency(self.currency)
        ):
            raise _fail("currency", "must be an ISO 4217 code such as KRW")
        _check_search(self.search)

    def params(
        self, mid: str, mode: str, after: HistoryKey | None, limit: int | None
    ) -> tuple[Any, ...]:
        """The payment_page parameters (engine/store/reports.sql); limit None: every row."""
        return (
            mid,
            sorted(self.kinds),
            None if self.statuses is None else sorted(self.statuses),
            self.created_from,
            self.created_to,
            self.amount_min,
            self.amount_max,
            self.search,
            after.created_at if after else None,
            after.kind.value if after else "",
            after.id if after else 0,
            limit,
            mode,
            self.currency,
        )


def check_limit(limit: int) -> int:
    """A page size from 1 to MAX_LIMIT."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise _fail("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return limit


# --- cursors ---

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # validate=True: characters outside the alphabet are an error, not silently skipped.
    padded = text.encode("ascii") + b"=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def _mac(secret: str, scope: str, payload: bytes) -> bytes:
    # A key of its own, derived from the server secret: a cursor tag is never a key hash.
    key = hmac.new(secret.encode(), b"history-cursor", hashlib.sha256).digest()
    return hmac.new(key, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]


def encode_cursor(key: HistoryKey, mid: str, mode: str, secret: str) -> str:
    """An opaque, signed cursor for the page after `key`, valid for (mid, mode) only."""
    payload = _DUMPS([key.created_at.isoformat(), key.kind.value, key.id]).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, f'{mid}/{mode}', payload))}"


def decode_cursor(raw: str, mid: str, mode: str, secret: str) -> HistoryKey:
    """The position a cursor names; InvalidField('cursor') for one not issued to (mid, mode)."""
    try:
        body, dot, tag = raw.partition(".")
        payload = _unb64(body)
        if not dot or not hmac.compare_digest(_unb64(tag), _mac(secret, f"{mid}/{mode}", payload)):
            raise ValueError("bad tag")
        at, kind, id_ = json.loads(payload)
        return HistoryKey(datetime.fromisoformat(at), HistoryKind(kind), int(id_))
    except (ValueError, TypeError, binascii.Error):
        raise _fail("cursor", "is not a cursor this service returned (pass it unchanged)") from None
