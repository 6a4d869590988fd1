"""Typed rows the repository returns; handlers and the engine never see raw records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Where a payment is. PENDING -> PROCESSING -> SUCCESS | FAILED."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
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
        """True once the outcome is known and can no longer change."""
        return self in (Status.SUCCESS, Status.FAILED)


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


@dataclass(frozen=True, slots=True)
class NewPayment:
    """A validated payment request, ready to store."""

    mid: str
    order_id: str
    user_public_id: str
    amount: int
    currency: str
    echo: dict[str, Any]
    webhook_url: str
    request_digest: str


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
    webhook_sent_at: datetime | None
    webhook_response_code: int | None
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
    last_actor: str | None = None


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


@dataclass(frozen=True, slots=True)
class Requeue:
    """A claimed payment going back to the queue (or to UNRESOLVED) without an outcome."""

    id: int
    status: Status
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


@dataclass(frozen=True, slots=True)
class Settled:
    """A payment whose final state this worker wrote."""

    id: int
    tid: str
    status: Status


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook delivery this worker holds, with what its payload needs."""

    id: int
    event_id: str
    event_status: Status
    url: str
    attempts: int
    payment_id: int
    tid: str
    amount: int
    currency: str
    approval_no: str | None
    fail_reason: str | None
    echo: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A webhook delivery as listed for people (dead letters, a payment's history)."""

    id: int
    event_id: str
    event_status: str
    url: str
    status: str
    attempts: int
    last_response_code: int | None
    last_error: str | None
    created_at: datetime
    tid: str | None = None
    delivered_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One signing secret of a merchant webhook endpoint (several while a secret is rolled)."""

    id: int
    mid: str | None
    url: str
    secret: str
    created_at: datetime
    expires_at: datetime | None
