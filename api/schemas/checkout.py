"""Checkout bodies: the merchant's session, the SDK's view of it, its pay request and its stream.

What the merchant's server sees (CheckoutSession) names the order and carries the client
secret; what the browser sees (SessionView) shows neither the order id nor the merchant's urls.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from api.schemas.common import Instant, Request, Response, check_text
from engine import money
from engine.checkout import sessions
from engine.models import Status
from engine.store.checkout import Session

# Where a session is (checkout_sessions.status, migration 0013).
SessionStatus = Literal["open", "scanned", "confirmed", "canceled", "expired"]
URL_PATTERN = r"^https?://[^\s\x00-\x1f]+$"
_URL = re.compile(URL_PATTERN)


class SessionRequest(Request):
    """POST /api/checkout/sessions: the order a customer is to pay."""

    model_config = ConfigDict(frozen=True)

    # At most what any payment can hold; the intake's own maximum is checked by the handler.
    amount: int = Field(gt=0, le=2**62)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    order_id: str = Field(alias="orderId", min_length=1, max_length=64)
    order_name: str = Field(alias="orderName", min_length=1, max_length=200)
    customer_ref: str | None = Field(default=None, alias="customerRef", min_length=1, max_length=64)
    success_url: str | None = Field(default=None, alias="successUrl", max_length=2048)
    cancel_url: str | None = Field(default=None, alias="cancelUrl", max_length=2048)
    expires_in_seconds: int = Field(default=180, alias="expiresInSeconds", ge=30, le=3600)

    @field_validator("order_id", "order_name", "customer_ref")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)

    @field_validator("success_url", "cancel_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not _URL.match(value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not money.is_currency(value):
            raise ValueError("must be an ISO 4217 currency in use (e.g. KRW, USD, JPY)")
        return value


class PayRequest(Request):
    """POST /api/public/checkout/sessions/{id}/pay: pay at a provider's own page."""

    model_config = ConfigDict(frozen=True)

    method: Literal["atom"]


class SessionOutcome(Response):
    """How a final session ended: `code` is null on success, else why it failed."""

    result: Literal["success", "failure"]
    code: str | None

    @classmethod
    def of_session(cls, s: Session) -> SessionOutcome | None:
        """How `s` ended, or None while it is not final (engine/checkout/sessions.outcome)."""
        found = sessions.outcome(s)
        return None if found is None else cls.model_validate(found)


class CheckoutSession(Response):
    """What the merchant's server sees of its session."""

    public_id: str = Field(alias="id")
    client_secret: str
    status: SessionStatus
    expires_at: Instant
    amount: int = Field(gt=0)
    currency: str
    order_id: str
    order_name: str
    customer_ref: str | None
    success_url: str | None
    cancel_url: str | None
    payment_tid: str | None
    payment_status: Status | None
    outcome: SessionOutcome | None


class SessionPayment(Response):
    """The session's payment as the browser and the app see it."""

    payment_tid: str = Field(alias="tid")
    payment_status: Status = Field(alias="status")
    amount: int = Field(gt=0)
    currency: str
    payment_approval_no: str | None = Field(alias="approvalNo")
    payment_fail_reason: str | None = Field(alias="failureReason")

    @classmethod
    def of_session(cls, s: Session) -> SessionPayment | None:
        """The payment `s` made, or None before it made one."""
        if s.payment_tid is None:
            return None
        # By member name: the session's own `status` must not be read for the alias's.
        return cls.model_validate({name: getattr(s, name) for name in cls.model_fields})


class SessionAction(Response):
    """Where the customer must go now: the provider's page of a REQUIRES_ACTION payment."""

    type: Literal["redirect"]
    url: str
    provider: str | None

    @classmethod
    def of_session(cls, s: Session) -> SessionAction | None:
        """The page to send the customer to, or None when there is none."""
        if s.payment_status == Status.REQUIRES_ACTION and s.payment_action_url:
            return cls(type="redirect", url=s.payment_action_url, provider=s.payment_provider)
        return None


class QrImages(Response):
    """The session's QR code (the app's link), as SVG and as PNG."""

    svg: str
    png: str


class SessionView(Response):
    """What the SDK sees of a session: no order id, no urls of the merchant, no secrets."""

    public_id: str = Field(alias="id")
    status: SessionStatus
    merchant_name: str
    amount: int = Field(gt=0)
    currency: str
    order_name: str
    expires_at: Instant
    qr: QrImages
    app_url: str
    payment: SessionPayment | None
    action: SessionAction | None
    outcome: SessionOutcome | None
    final: bool
    version: int = Field(ge=1)


class SessionChange(Response):
    """The data of a stream's `changed` event: enough to decide whether to read the view."""

    status: SessionStatus
    payment_status: Status | None
    final: bool

    def data(self) -> str:
        """The event's data line, spelt as the stream has always written it (json.dumps)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True))
