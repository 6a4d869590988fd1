"""The manual webhook trigger: settle a payment by hand, or send its webhook again."""

from __future__ import annotations

import time

import structlog

from engine import errors
from engine.models import Status
from engine.repository import Repository

log = structlog.get_logger()

MANUAL_FAIL_REASON = "MANUAL_TRIGGER"


async def trigger(repo: Repository, tid: str, status: Status) -> str:
    """Settle `tid` with `status` if not final, or resend its webhook if final with it.

    Returns "settled" or "resent". A payment final with the other status is a StateConflict.
    """
    if not status.is_final:
        raise ValueError("status must be SUCCESS or FAILED")
    approval_no = f"AP{int(time.time() * 1000)}" if status is Status.SUCCESS else None
    fail_reason = MANUAL_FAIL_REASON if status is Status.FAILED else None
    settled = await repo.settle_manual(tid, status, approval_no, fail_reason)
    if settled is not None:
        log.info("payment.settled", tid=tid, status=status.value, by="manual_trigger")
        return "settled"
    if await repo.enqueue_resend(tid, status) is not None:
        log.info("webhook.resend_queued", tid=tid, status=status.value)
        return "resent"
    payment = await repo.payment_by_tid(tid)
    if payment is None:
        raise errors.PaymentNotFound(tid)
    if payment.status.is_final:
        raise errors.StateConflict(
            tid, payment.status.value,
            f"payment {tid} is already {payment.status.value}; it cannot become {status.value}",
        )  # fmt: skip
    # It left PENDING/PROCESSING for a final state between our two statements: ask again.
    return await trigger(repo, tid, status)
