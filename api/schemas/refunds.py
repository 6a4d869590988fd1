"""Refund bodies: the request (how much to give back) and how a refund is shown."""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator

from api.schemas.common import Instant, Request, Response, check_text
from engine.models import RefundStatus

REFUND_ID_PATTERN = r"^RF[0-9A-Za-z]{11}$"


class RefundRequest(Request):
    """POST /api/payments/{tid}/refunds: how much to give back, in minor units."""

    model_config = ConfigDict(frozen=True)

    # At most what any payment can hold; the payment's own remainder is checked by the engine.
    amount: int = Field(gt=0, le=2**62)
    reason: str | None = Field(default=None, min_length=1, max_length=500)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)


class Refund(Response):
    """A refund as the API shows it."""

    public_id: str = Field(alias="refundId", pattern=REFUND_ID_PATTERN)
    tid: str = Field(alias="transactionId")
    amount: int = Field(gt=0)
    currency: str
    reason: str | None
    status: RefundStatus
    provider_refund_no: str | None = Field(alias="refundNo")
    fail_reason: str | None
    requested_at: Instant
    processed_at: Instant | None


class PaymentRefunds(Response):
    """A payment's refunds, oldest first."""

    tid: str = Field(alias="transactionId")
    refunds: list[Refund]
