"""Webhook endpoint bodies: a registration, a roll, and how an endpoint is shown (never its
secrets, except the new one once)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from api.schemas.common import Instant, Mode, Request, Response, check_text

# A roll's grace period: how long the old secret keeps signing too (at most 7 days).
MAX_GRACE_SECONDS = 7 * 24 * 3600
# engine/webhooks/signing.new_secret: "whsec_" and the base64 of 32 random bytes.
SECRET_PATTERN = r"^whsec_[A-Za-z0-9+/]{43}=$"


class EndpointRequest(Request):
    """POST /api/webhook-endpoints."""

    url: str = Field(min_length=1, max_length=2048)
    description: str | None = Field(default=None, max_length=500)

    @field_validator("description")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        # Free text like an order name: storable, and no control characters (they reach logs).
        return None if value is None else check_text(value)


class EndpointRollRequest(Request):
    """POST /api/webhook-endpoints/{id}/roll: the old secrets sign `graceSeconds` more."""

    grace_seconds: int = Field(default=0, alias="graceSeconds", ge=0, le=MAX_GRACE_SECONDS)


class Endpoint(Response):
    """A webhook endpoint as the API shows it: never its secrets."""

    # Neither url nor description is bounded here: the operator's CLI
    # (engine/commands/endpoints.py) registers endpoints too, without the API's checks.
    id: int = Field(ge=1)
    url: str
    description: str | None
    # The mode of the key that registered it; only keys of that mode see it.
    mode: Mode
    created_at: Instant
    # Secrets that sign its deliveries now: more than 1 while a roll's grace period runs. At
    # least 1 once registered or rolled here; 0 only for an endpoint carried over by migration
    # 0010 whose secrets had all expired.
    active_secrets: int = Field(ge=0)


class EndpointCreated(Endpoint):
    """201 of a registration or a roll: the endpoint and its new secret, shown this once."""

    secret: str = Field(pattern=SECRET_PATTERN)


class EndpointDeleted(Endpoint):
    """200 of a delete: the endpoint as it was; it receives nothing more, its secrets stopped."""

    active_secrets: Literal[0]
    deleted: Literal[True]


class EndpointList(Response):
    """The merchant's active endpoints of the key's mode, oldest first."""

    endpoints: list[Endpoint]


class EndpointTestResult(Response):
    """200 of a test event: what the endpoint answered (nothing is stored or retried)."""

    endpoint_id: int = Field(ge=1)
    event_id: str = Field(pattern=r"^evt_test_[0-9a-f]{20}$")
    # True when the endpoint answered 2xx.
    delivered: bool
    # Why not: `refused:<reason>` (the destination is refused now), `timeout`, `redirect`,
    # `http_<status>`, `connect_failed` ...; null when delivered.
    error: str | None
    # The endpoint's HTTP status, when it answered one: any three digits it sent.
    response_code: int | None = Field(ge=0, le=999)
