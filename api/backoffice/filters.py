"""The payments page's filters: read from the URL (so they survive reload and can be shared
or saved), checked, and turned into the engine's PaymentQuery.

The names are the API's (`GET /api/payments`: kind, status, from, to, minAmount, maxAmount,
q, currency), so a page's URL and the API call for the same rows read alike; both build the
engine's PaymentQuery (engine/reports), which checks every value once. A date (YYYY-MM-DD) is a
whole day in the user's time zone, `to` included; an ISO 8601 instant is taken as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from multidict import MultiDict, MultiDictProxy

from api.backoffice import i18n
from api.backoffice.context import PageError
from engine.reports.query import KINDS as ALL_KINDS
from engine.reports.query import MAX_SEARCH, PaymentQuery
from engine.reports.query import STATUSES as ALL_STATUSES

NAMES = ("kind", "status", "from", "to", "minAmount", "maxAmount", "q", "currency")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_INTEGER = re.compile(r"^[0-9]{1,19}$")
_MAX_BIGINT = 2**63 - 1
KINDS = ("payment", "cancel", "refund")
STATUSES = tuple(sorted(ALL_STATUSES))
assert frozenset(KINDS) == ALL_KINDS


def _bad(name: str, message: str) -> PageError:
    return PageError(422, "Unprocessable Content", f"{name}: {message}")


@dataclass(frozen=True)
class Filters:
    """What the page was asked for, as typed, and what it means."""

    values: dict[str, list[str]] = field(default_factory=dict)
    query_: PaymentQuery = field(default_factory=PaymentQuery)

    @property
    def payment_query(self) -> PaymentQuery:
        """The engine's filter."""
        return self.query_

    def one(self, name: str) -> str:
        """A single-valued filter as typed ("" when not given)."""
        return (self.values.get(name) or [""])[0]

    def many(self, name: str) -> list[str]:
        """A multi-valued filter (kind, status)."""
        return self.values.get(name, [])

    @property
    def query(self) -> list[tuple[str, str]]:
        """The filters as URL parameters (empty ones left out)."""
        return [(k, v) for k in NAMES for v in self.values.get(k, []) if v]

    @property
    def query_string(self) -> str:
        """The filters as a query string (what a saved view keeps)."""
        return urlencode(self.query)

    @property
    def only_search(self) -> bool:
        """Only the search box is filled: an exact tid or order id opens that payment."""
        return bool(self.one("q")) and [k for k, _ in self.query] == ["q"]


def _instant(name: str, raw: str, zone: str, end: bool) -> datetime:
    if _DATE.match(raw):
        try:
            day = date.fromisoformat(raw)
            if end:
                day += timedelta(days=1)  # `to` names the last day shown: up to its end
        except (ValueError, OverflowError):
            raise _bad(name, "is not a date (YYYY-MM-DD)") from None
        return datetime.combine(day, time(), i18n.zone(zone))
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))  # a "+" unencoded in a URL
        parsed.astimezone(UTC)  # near year 1 or 9999 an offset leaves the range
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise _bad(name, "must be a date (YYYY-MM-DD) or an ISO 8601 instant with an offset")
    return parsed


def _amount(name: str, raw: str) -> int | None:
    if not raw:
        return None
    if not _INTEGER.match(raw) or int(raw) > _MAX_BIGINT:
        raise _bad(name, "must be a whole number of minor units (₩10,000 is 10000)")
    return int(raw)


def _choices(name: str, given: list[str], allowed: tuple[str, ...]) -> frozenset[str] | None:
    values = [v for raw in given for v in raw.split(",") if v]
    for v in values:
        if v not in allowed:
            raise _bad(name, f"{v[:40]!r} is not one of {', '.join(allowed)}")
    return frozenset(values) if values else None


def parse(query: Mapping[str, Any], zone: str) -> Filters:
    """The filters in a URL's query; PageError 422 naming the first bad one."""
    multi = query if isinstance(query, MultiDictProxy | MultiDict) else MultiDict(query)
    values = {n: [v.strip() for v in multi.getall(n, [])] for n in NAMES}
    for n in ("from", "to", "minAmount", "maxAmount", "q", "currency"):
        if len(values[n]) > 1:
            raise _bad(n, "must be given at most once")
    one = {n: (values[n] or [""])[0] for n in NAMES}
    q = one["q"]
    if len(q) > MAX_SEARCH or "\x00" in q:
        raise _bad("q", f"must be at most {MAX_SEARCH} characters, without NUL")
    currency = one["currency"].upper()
    if currency and (len(currency) != 3 or not currency.isalpha()):
        raise _bad("currency", "an ISO 4217 code such as KRW")
    created_from = _instant("from", one["from"], zone, False) if one["from"] else None
    created_to = _instant("to", one["to"], zone, True) if one["to"] else None
    if created_from and created_to and created_from >= created_to:
        raise _bad("to", "must not be before from")
    low, high = _amount("minAmount", one["minAmount"]), _amount("maxAmount", one["maxAmount"])
    if low is not None and high is not None and low > high:
        raise _bad("maxAmount", "must not be less than minAmount")
    kinds = _choices("kind", values["kind"], KINDS)
    return Filters(
        values={k: v for k, v in values.items() if any(v)},
        query_=PaymentQuery(
            kinds=ALL_KINDS if kinds is None else kinds,
            statuses=_choices("status", values["status"], STATUSES),
            created_from=created_from,
            created_to=created_to,
            amount_min=low,
            amount_max=high,
            currency=currency or None,
            search=q or None,
        ),
    )


def parse_saved(text: str, zone: str) -> Filters:
    """A saved view's query string, checked like the URL's."""
    if len(text) > 2000:
        raise _bad("query", "is too long to save")
    return parse(MultiDict(parse_qsl(text, keep_blank_values=False)), zone)
