"""Payment bodies: the seed's 202 and lookup, the lists of unresolved payments and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from api.schemas.common import Instant, Response
from engine.models import Payment, Status

CREATED = "Payment request received and processing"
REPLAYED = "Payment request already received"
# The seed's request, as the README shows it.
SEED_EXAMPLE = {
    "userPublicId": "USR_123",
    "orderId": "ORD_456",
    "amount": 10000,
    "echo": {
        "mid": "hamster_dummy_mid_001",
        "orderNumber": "TEST_ORDER",
        "gatewayReferenceId": "CGW_REF_123",
    },
}


class PaymentAck(Response):
    """202 for a new payment (echo exactly as sent), 200 for a replay (its current status)."""

    status: Status
    code: Literal["ACK_OK"]
    tid: str = Field(alias="transactionId")
    amount: int = Field(gt=0)
    currency: str
    echo: dict[str, Any]
    message: Literal["Payment request received and processing", "Payment request already received"]

    @classmethod
    def of_payment(cls, p: Payment, *, created: bool, echo: dict[str, Any]) -> PaymentAck:
        """The seed's 202 body (and, for a replay, the same body with the current status)."""
        return cls.of(p, code="ACK_OK", echo=echo, message=CREATED if created else REPLAYED)


class PaymentLookup(Response):
    """The seed's lookup body."""

    tid: str
    order_id: str
    amount: int = Field(gt=0)
    currency: str
    status: Status
    approval_no: str | None
    fail_reason: str | None
    requested_at: Instant
    processed_at: Instant | None
    webhook_sent_at: Instant | None
    webhook_response_code: int | None
    # What refunds have returned so far (PARTIALLY_REFUNDED / REFUNDED payments).
    refunded_amount: int = Field(ge=0)


class UnresolvedPayment(PaymentLookup):
    """A payment whose outcome is not known: the lookup body and why."""

    unresolved_reason: str | None = Field(alias="reason")
    outcome_unknown_since: Instant | None
    attempts: int = Field(ge=0)
    # None while it waits for a person rather than for the next inquiry.
    next_attempt_at: Instant | None

    @field_validator("next_attempt_at")
    @classmethod
    def _parked(cls, value: datetime | None) -> datetime | None:
        # The far future is how the store parks a payment for a person.
        return None if value is None or value.year >= 9999 else value


class UnresolvedPage(Response):
    """One page of unresolved payments; `next` is the `after` of the next page, if one."""

    payments: list[UnresolvedPayment]
    next: int | None


class WebhookDelivery(Response):
    """One webhook delivery: where it goes, how far it got."""

    id: int
    event_id: str
    # What webhook_deliveries.event_status may hold (migration 0005 adds the refund events).
    event_status: Literal["SUCCESS", "FAILED", "CANCELED", "REFUNDED", "REFUND_FAILED"]
    tid: str | None
    url: str
    status: Literal["PENDING", "SENDING", "DELIVERED", "DEAD"]
    attempts: int = Field(ge=0)
    last_response_code: int | None
    last_error: str | None
    created_at: Instant
    delivered_at: Instant | None


class PaymentWebhooks(Response):
    """One page of a payment's deliveries, oldest first; `next` is the `after` of the next page."""

    tid: str
    deliveries: list[WebhookDelivery]
    next: int | None


class DeadLetterPage(Response):
    """One page of DEAD deliveries; `next` is the `after` of the next page, if one."""

    deliveries: list[WebhookDelivery]
    next: int | None


class TriggerAccepted(Response):
    """202 of the manual trigger: the payment was settled, or its webhook queued again."""

    tid: str
    status: Literal["SUCCESS", "FAILED"]
    action: Literal["settled", "resent"]
    webhook: Literal["queued"]


class RedeliverAccepted(Response):
    """202 of a redelivery: the DEAD delivery is PENDING again."""

    id: int
    status: Literal["PENDING"]


class Health(Response):
    """200 of /health."""

    ok: Literal[True]
