"""Cancel, and accepting a refund (the API side).

A refund is accepted only after its amount is reserved on the payment by compare-and-set, so
the refunds of a payment never add up to more than was captured, however many arrive at once.
The worker then settles it (engine/refunds/settle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from engine import errors, ids
from engine.models import Payment, Refund
from engine.store.refunds import RefundKeyTaken
from engine.store.repository import Repository

log = structlog.get_logger()


async def cancel(repo: Repository, tid: str, mid: str, mode: str, actor: str) -> Payment:
    """PENDING -> CANCELED; a payment already being processed (or done) is a StateConflict."""
    canceled = await repo.payments.cancel(tid, mid, mode, actor)
    if canceled is not None:
        log.info("payment.canceled", tid=tid, by=actor)
        return canceled
    payment = await repo.payments.payment_by_tid(tid, mid, mode)
    if payment is None:
        raise errors.PaymentNotFound(tid)
    if payment.status.value == "PENDING":  # an earlier attempt may have charged
        raise errors.StateConflict(
            tid,
            payment.status.value,
            f"payment {tid} cannot be canceled: the outcome of an earlier attempt is unknown",
        )
    raise errors.StateConflict(
        tid,
        payment.status.value,
        f"payment {tid} is {payment.status.value}; only a PENDING payment can be canceled",
    )


@dataclass(frozen=True, slots=True)
class Requested:
    """The refund and whether this request created it."""

    refund: Refund
    created: bool


async def request_refund(
    repo: Repository,
    snowflake: ids.Snowflake,
    *,
    tid: str,
    mid: str,
    mode: str,
    amount: int,
    reason: str | None,
    key: str,
    digest: str,
    actor: str,
) -> Requested:
    """Accept a refund (idempotent on the merchant's key), or say why it cannot be."""
    for _ in range(2):
        existing = await repo.refunds.refund_by_key(mid, mode, key)
        if existing is not None:
            if existing.request_digest != digest or existing.tid != tid:
                raise errors.IdempotencyConflict(key, existing.tid, field="Idempotency-Key")
            return Requested(existing, False)
        try:
            created = await repo.refunds.create_refund(
                tid=tid,
                mid=mid,
                mode=mode,
                amount=amount,
                reason=reason,
                key=key,
                digest=digest,
                public_id=f"RF{snowflake.next_id()}",
                actor=actor,
            )
        except RefundKeyTaken:
            continue  # a concurrent twin won: answer with its refund
        if created is not None:
            log.info("refund.requested", tid=tid, refund=created.public_id, amount=amount)
            return Requested(created, True)
        payment = await repo.payments.payment_by_tid(tid, mid, mode)
        if payment is None:
            raise errors.PaymentNotFound(tid)
        if payment.status.value not in ("SUCCESS", "PARTIALLY_REFUNDED"):
            raise errors.StateConflict(
                tid,
                payment.status.value,
                f"payment {tid} is {payment.status.value}; only a captured payment is refundable",
            )
        refundable = payment.amount - payment.refund_reserved
        raise errors.RefundExceedsCaptured(tid, amount, refundable)
    raise RuntimeError("idempotency key raced twice")  # pragma: no cover
