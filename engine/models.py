"""Typed rows the repository returns; handlers and the engine never see raw records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

# Test or live: every object records the mode of the key that made it, and a key sees and
# acts only on objects of its own mode.
Mode = Literal["live", "test"]


class Status(StrEnum):
    """Where a payment is. PENDING -> PROCESSING -> SUCCESS | FAILED, or through
    REQUIRES_ACTION when the provider sends the customer to its own page first."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    # The provider answered with a token and a page: waiting for the customer there (until
    # action_expires_at), then for the provider's callback or our inquiry.
    REQUIRES_ACTION = "REQUIRES_ACTION"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    # The outcome is not known and inquiries have not settled it within the window.
    UNRESOLVED = "UNRESOLVED"
    # Canceled by the merchant before it was processed.
    CANCELED = "CANCELED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"

    @property
    def is_final(self) -> bool:
        """True once the engine will not process it again (its outcome is known)."""
        return self not in (
            Status.PENDING,
            Status.PROCESSING,
            Status.REQUIRES_ACTION,
            Status.UNRESOLVED,
        )


@dataclass(frozen=True, slots=True)
class Merchant:
    """A merchant: the seed's mid, made real."""

    id: int
    mid: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as lists show it: never the key itself."""

    id: int
    mode: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    # 'secret' (sk_) or 'publishable' (pk_: checkout sessions only).
    kind: str = "secret"


@dataclass(frozen=True, slots=True)
class AuthKey:
    """What a presented key resolves to."""

    id: int
    mid: str
    mode: str
    prefix: str
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool
    kind: str = "secret"


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A validated payment request, ready to store."""

    mid: str
    order_id: str
    user_public_id: str
    amount: int
    currency: str
    echo: dict[str, Any]
    # As asked for; None means the merchant's registered endpoint, else the default.
    webhook_url: str | None
    request_digest: str
    # The mode of the key that asked: the payment lives in it.
    mode: Mode
    provider: str = "card"
    order_name: str | None = None
    # Who asked ("merchant:<key prefix>"), recorded in the payment's history.
    actor: str = "merchant"
    # The merchant's endpoint that webhook_url names (checked by the intake), if one is named.
    endpoint_id: int | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """One row of payment_processes."""

    id: int
    public_id: str
    tid: str
    mid: str
    order_id: str
    user_public_id: str
    amount: int
    currency: str
    status: Status
    approval_no: str | None
    fail_reason: str | None
    echo: dict[str, Any]
    request_digest: str
    webhook_url: str
    requested_at: datetime
    processing_started_at: datetime | None
    processed_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    next_attempt_at: datetime
    updated_at: datetime
    provider: str = "card"
    outcome_unknown_since: datetime | None = None
    unresolved_reason: str | None = None
    order_name: str | None = None
    canceled_at: datetime | None = None
    refunded_amount: int = 0
    refund_reserved: int = 0
    # The webhook status, read from the payment's deliveries by the lookup (get_payment_by_tid,
    # migration 0022); None from reads that do not join them (the intake, cancel, lists).
    webhook_sent_at: datetime | None = None
    webhook_response_code: int | None = None
    last_actor: str | None = None
    mode: str = "test"
    # The endpoint the webhooks go to; None for the operator's default receiver.
    endpoint_id: int | None = None
    # A hosted payment (REQUIRES_ACTION): the provider's token and page, and until when the
    # customer may act; Atom's transaction id and the way the customer paid, once known.
    atom_token_id: str | None = None
    atom_txn_id: str | None = None
    payment_method: str | None = None
    action_url: str | None = None
    action_expires_at: datetime | None = None
    checkout_session_id: int | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A payment this worker holds the lease on."""

    id: int
    tid: str
    amount: int
    currency: str
    order_id: str
    attempts: int
    provider: str = "card"
    # Set when an earlier call may have charged: ask the provider before charging again.
    outcome_unknown_since: datetime | None = None
    # Test payments go to test mode's providers, live ones to live mode's.
    mode: str = "live"
    # The acquirer's token of the customer's card (a checkout session's payment), if any.
    card_token: str | None = None
    # The checkout session that made it: its customer is at a browser, so a provider with a
    # hosted page (Atom) may send them there.
    checkout_session_id: int | None = None


@dataclass(frozen=True, slots=True)
class Requeue:
    """A claimed payment going back to the queue (or to UNRESOLVED) without an outcome."""

    id: int
    # PENDING or UNRESOLVED (REFUND_PENDING or REFUND_UNRESOLVED for a refund).
    status: str
    # Seconds until it is due again; None means never by itself (it waits for a person).
    delay: float | None
    # True when the last call may have moved money.
    unknown: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the acquirer decided for a claimed payment."""

    id: int
    status: Status
    approval_no: str | None = None
    fail_reason: str | None = None
    # REQUIRES_ACTION only: the provider's token and the page to send the customer to.
    token: str | None = None
    action_url: str | None = None
    # The way the customer paid, when the provider says.
    payment_method: str | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """A payment whose final state this worker wrote."""

    id: int
    tid: str
    status: Status


@dataclass(frozen=True, slots=True)
class DeliveryBase:
    """A webhook delivery as every reader sees it: which event, sent where, how often so far."""

    id: int
    event_id: str
    # SUCCESS or FAILED for a payment's outcome; REFUNDED or REFUND_FAILED for a refund's.
    event_status: str
    url: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Delivery(DeliveryBase):
    """A webhook delivery this worker holds, with what its payload needs."""

    payment_id: int
    tid: str
    amount: int
    currency: str
    approval_no: str | None
    fail_reason: str | None
    echo: dict[str, Any]
    # The payment's merchant and mode, and the endpoint whose secrets sign this delivery
    # (None: the operator's default receiver, signed with ENGINE_WEBHOOK_SECRET).
    mid: str = ""
    mode: str = "test"
    endpoint_id: int | None = None
    refunded_amount: int = 0
    refund_public_id: str | None = None
    refund_amount: int | None = None
    refund_no: str | None = None
    refund_fail_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord(DeliveryBase):
    """A webhook delivery as listed for people (dead letters, a payment's history)."""

    status: str
    last_response_code: int | None
    last_error: str | None
    created_at: datetime
    tid: str | None = None
    delivered_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A merchant's webhook endpoint in one mode (its secrets are never listed)."""

    id: int
    mid: str
    mode: str
    url: str
    description: str | None
    created_at: datetime
    deleted_at: datetime | None
    # Secrets that sign its deliveries now: 2 while a roll's grace period runs.
    active_secrets: int = 1


class RefundStatus(StrEnum):
    """Where a refund is. REFUND_PENDING -> REFUND_PROCESSING -> REFUNDED | REFUND_FAILED."""

    REFUND_PENDING = "REFUND_PENDING"
    REFUND_PROCESSING = "REFUND_PROCESSING"
    REFUNDED = "REFUNDED"
    REFUND_FAILED = "REFUND_FAILED"
    # Its outcome is not known, or the provider refused us: listed, waits for an answer.
    REFUND_UNRESOLVED = "REFUND_UNRESOLVED"


@dataclass(frozen=True, slots=True)
class Refund:
    """One row of refunds, with its payment's tid."""

    id: int
    public_id: str
    payment_id: int
    tid: str
    mid: str
    amount: int
    currency: str
    reason: str | None
    idempotency_key: str
    request_digest: str
    status: RefundStatus
    provider_refund_no: str | None
    fail_reason: str | None
    requested_at: datetime
    processed_at: datetime | None
    attempts: int
    outcome_unknown_since: datetime | None
    unresolved_reason: str | None
    mode: str = "test"


@dataclass(frozen=True, slots=True)
class ClaimedRefund:
    """A refund this worker holds the lease on."""

    id: int
    public_id: str
    payment_id: int
    tid: str
    amount: int
    currency: str
    attempts: int
    provider: str
    outcome_unknown_since: datetime | None
    mode: str = "live"


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """What the provider decided for a refund."""

    id: int
    status: RefundStatus
    refund_no: str | None = None
    fail_reason: str | None = None


class HistoryKind(StrEnum):
    """What a line of a merchant's history records."""

    PAYMENT = "payment"
    # A canceled payment, listed at the time it was canceled.
    CANCEL = "cancel"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One state change of a payment or of one of its refunds (a payment_events row)."""

    id: int
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    # The refund's public id when the change was a refund's.
    refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryKey:
    """A position in a history, which runs newest first by (created_at, kind, id)."""

    created_at: datetime
    kind: HistoryKind
    id: int


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One line of a merchant's history: a payment, a cancel or a refund."""

    kind: HistoryKind
    # payment_processes.id, or refunds.id for a refund.
    id: int
    tid: str
    # The refund's public id (refunds only).
    refund_id: str | None
    order_id: str
    order_name: str | None
    user_public_id: str
    # The refund's amount for a refund.
    amount: int
    currency: str
    status: str
    created_at: datetime

    @property
    def key(self) -> HistoryKey:
        """Where the page after this item starts."""
        return HistoryKey(self.created_at, self.kind, self.id)
