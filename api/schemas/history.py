"""History bodies: one listing of payments, cancels and refunds, and a payment's timeline."""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import Instant, Response
from engine.models import HistoryKind, RefundStatus, Status


class HistoryItem(Response):
    """One line of the history: a payment, a cancel or a refund."""

    kind: HistoryKind
    tid: str
    refund_id: str | None
    order_id: str
    order_name: str | None
    user_public_id: str = Field(alias="customerId")
    # The refund's amount, for a refund.
    amount: int = Field(gt=0)
    currency: str
    status: Status | RefundStatus
    created_at: Instant


class HistoryPage(Response):
    """One page of the history, newest first; `next` is the `cursor` of the next page, if one."""

    items: list[HistoryItem]
    next: str | None


class PaymentEvent(Response):
    """One state change of a payment or of one of its refunds."""

    id: int
    from_status: str | None = Field(alias="from")
    to_status: str = Field(alias="to")
    # "engine:<worker>", "merchant:<key prefix>", ...
    actor: str
    at: Instant
    refund_id: str | None


class PaymentEvents(Response):
    """Every state change of one payment, oldest first."""

    tid: str
    events: list[PaymentEvent]
