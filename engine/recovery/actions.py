"""What an operator does about payments the engine could not finish: list, inquire now,
release parked ones, resolve by hand, and find payments across merchants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from engine import errors
from engine.models import Status
from engine.store.recovery import RecoveryStore

log = structlog.get_logger()

MAX_LIST = 500
MAX_REASON = 1000


def actor(operator: str) -> str:
    """How the history and the audit log name an operator."""
    if not isinstance(operator, str) or not 1 <= len(operator) <= 200 or "\x00" in operator:
        raise errors.InvalidField("operator", "must be 1 to 200 characters")
    return f"operator:{operator}"


def check_reason(reason: str | None, *, required: bool) -> str | None:
    """A reason as given (stripped); InvalidField('reason') if required and missing or too long."""
    text = reason.strip() if isinstance(reason, str) else None
    if required and not text:
        raise errors.InvalidField("reason", "is required: say why, for the audit log")
    if text and (len(text) > MAX_REASON or "\x00" in text):
        raise errors.InvalidField("reason", f"must be at most {MAX_REASON} characters")
    return text or None


def check_limit(limit: int) -> int:
    """A list size from 1 to MAX_LIST."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise errors.InvalidField("limit", f"must be an integer from 1 to {MAX_LIST}")
    return limit


@dataclass(frozen=True, slots=True)
class Stuck:
    """An UNRESOLVED payment, as the recovery page lists it."""

    id: int
    tid: str
    mid: str
    mode: str
    provider: str
    amount: int
    currency: str
    status: str
    unresolved_reason: str | None
    outcome_unknown_since: datetime | None
    attempts: int
    requested_at: datetime
    updated_at: datetime
    # Waits for a person: never retried by itself.
    parked: bool
    # The provider refused our credentials (HTTP 401/403): release it once they are fixed.
    credentials_refused: bool


async def unresolved(
    store: RecoveryStore,
    *,
    after_id: int = 0,
    limit: int = 100,
    parked: bool | None = None,
    provider: str | None = None,
    mode: str | None = None,
) -> list[Stuck]:
    """UNRESOLVED payments of every merchant after id `after_id`, oldest first.

    parked=True lists only those waiting for a person (after a provider refused us), False
    only those still inquired by themselves; provider and mode narrow it further.
    """
    rows = await store.unresolved(
        after_id, check_limit(limit), parked=parked, provider=provider, mode=mode
    )
    return [Stuck(**dict(r)) for r in rows]


async def inquire_now(
    store: RecoveryStore, tid: str, operator: str, reason: str | None = None
) -> str:
    """Make payment `tid` due now, so the next pass inquires it; returns its status.

    OperatorActionRefused unless it is PENDING or UNRESOLVED (PaymentNotFound if none).
    """
    who = actor(operator)
    row = await store.inquire_now(tid, who, check_reason(reason, required=False))
    if row is None:
        raise await _refusal(store, tid, "can be inquired only while PENDING or UNRESOLVED")
    log.info("operator.inquire_now", tid=tid, operator=who)
    return str(row["status"])


async def release_parked(
    store: RecoveryStore,
    operator: str,
    *,
    provider: str | None = None,
    mode: str | None = None,
    tids: Sequence[str] | None = None,
    reason: str | None = None,
) -> list[str]:
    """Parked payments (of `provider` in `mode`, or only `tids`) go back to the queue now.

    For after the provider's credentials are fixed. One that may have moved money stays
    UNRESOLVED and is inquired first; the others are PENDING again. Returns their tids.
    """
    if provider is None and mode is None and tids is None:
        raise errors.InvalidField("provider", "name a provider and mode, or the tids, to release")
    if mode is not None and mode not in ("live", "test"):
        raise errors.InvalidField("mode", "must be live or test")
    who = actor(operator)
    released = await store.release_parked(
        provider, mode, tids, who, check_reason(reason, required=False)
    )
    log.info("operator.release_parked", provider=provider, mode=mode, count=len(released))
    return released


async def resolve(
    store: RecoveryStore,
    tid: str,
    status: Status | str,
    reason: str,
    operator: str,
    *,
    approval_no: str | None = None,
    fail_reason: str | None = None,
) -> Status:
    """Settle an UNRESOLVED payment (or a PENDING one whose outcome is unknown) by hand.

    A compare-and-set: of two resolves one wins; the other changes nothing and gets
    OperatorActionRefused. The webhook is queued like any settle, the audit row written in
    the same transaction. `reason` is required (why the operator knows the outcome).
    """
    if status not in (Status.SUCCESS, Status.FAILED):
        raise errors.InvalidField("status", "must be SUCCESS or FAILED")
    why = check_reason(reason, required=True)
    assert why is not None
    who = actor(operator)
    final = Status(status)
    approval = (approval_no or "MANUAL") if final is Status.SUCCESS else None
    failed = (fail_reason or "RESOLVED_BY_OPERATOR") if final is Status.FAILED else None
    row = await store.resolve(tid, final.value, approval, failed, who, why)
    if row is None:
        log.warning("operator.resolve_lost_race", tid=tid, operator=who)
        raise await _refusal(store, tid, "can be resolved only while UNRESOLVED or unknown")
    log.info("operator.resolved", tid=tid, status=final.value, operator=who)
    return final


async def _refusal(store: RecoveryStore, tid: str, rule: str) -> errors.PaymentError:
    current = await store.payment_state(tid)
    if current is None:
        return errors.PaymentNotFound(tid)
    return errors.OperatorActionRefused(f"payment:{tid}", f"{tid} is {current}: {rule}")


@dataclass(frozen=True, slots=True)
class Found:
    """A payment found across merchants."""

    id: int
    tid: str
    mid: str
    mode: str
    order_id: str
    order_name: str | None
    amount: int
    currency: str
    status: str
    requested_at: datetime


async def search_payments(store: RecoveryStore, text: str, limit: int = 50) -> list[Found]:
    """Payments of any merchant whose tid or order id is `text`, or whose mid is `text`."""
    text = text.strip() if isinstance(text, str) else ""
    if not 1 <= len(text) <= 200 or "\x00" in text:
        raise errors.InvalidField("search", "must be 1 to 200 characters")
    return [Found(**dict(r)) for r in await store.search_payments(text, check_limit(limit))]
