"""Request and response shapes of the HTTP contract (the seed's JSON, camelCase)."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import AnyHttpUrl, ConfigDict, Field, ValidationInfo, field_validator

from api import problems
from api.schemas.common import Request, _check_text, check_text
from engine import money

# Deeper JSON than this is refused: nothing legitimate nests so far, and it guards recursion.
MAX_ECHO_DEPTH = 32


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_ECHO_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_ECHO_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, depth + 1)


class PaymentRequest(Request):
    """POST /api/payments. Strict: an amount must be a JSON integer, not a string or a float."""

    model_config = ConfigDict(frozen=True)

    user_public_id: str = Field(alias="userPublicId", min_length=1, max_length=64)
    order_id: str = Field(alias="orderId", min_length=1, max_length=64)
    amount: int = Field(gt=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    echo: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = Field(default=None, alias="webhookUrl", max_length=2048)
    # Which provider settles it: a card through the acquirer, or Atom.
    provider: Literal["card", "atom"] = "card"
    # The merchant's name for the order, searchable in the history.
    order_name: str | None = Field(default=None, alias="orderName", min_length=1, max_length=200)

    @field_validator("user_public_id", "order_id", "order_name")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        # Amounts are integers in the minor unit, so any amount fits any currency's exponent
        # (engine.money.minor_unit_exponent); what must be checked is that it is money at all.
        if value is not None and not money.is_currency(value):
            raise ValueError("must be an ISO 4217 currency in use (e.g. KRW, USD, JPY)")
        return value

    @field_validator("amount")
    @classmethod
    def _not_above_max(cls, value: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_amount")
        if limit is not None and value > limit:
            raise ValueError(f"must not exceed {limit}")
        return value

    @field_validator("echo")
    @classmethod
    def _echo(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, 1)
        mid = value.get("mid")
        if mid is not None and not (isinstance(mid, str) and 0 < len(mid) <= 64):
            raise ValueError("echo.mid must be a string of 1 to 64 characters")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_text(value)
        AnyHttpUrl(value)  # raises on anything but an absolute http(s) URL
        return value

    def digest_fields(self, currency: str, webhook_url: str | None) -> dict[str, Any]:
        """What makes two requests for the same order the same request."""
        return {
            "userPublicId": self.user_public_id,
            "orderId": self.order_id,
            "amount": self.amount,
            "currency": currency,
            "echo": self.echo,
            "webhookUrl": webhook_url,
            "provider": self.provider,
            "orderName": self.order_name,
        }


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e400 parses to infinity, which JSON (and jsonb) cannot hold.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """Parse a request body strictly: UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise problems.Problem(
            400,
            "Bad Request",
            "the JSON body is nested too deeply",
            slug="malformed-json",
            field="body",
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise problems.Problem(
            400,
            "Bad Request",
            f"the body is not valid JSON: {exc}",
            slug="malformed-json",
            field="body",
        ) from None
