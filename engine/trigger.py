"""The manual webhook trigger: settle a payment by hand, or send its webhook again."""

from __future__ import annotations

import time

import structlog

from engine import errors
from engine.models import Status
from engine.repository import Repository

log = structlog.get_logger()

MANUAL_FAIL_REASON = "MANUAL_TRIGGER"


async def trigger(
    repo: Repository, tid: str, status: Status, *, mid: str, actor: str, may_settle: bool
) -> str:
    """Settle `tid` with `status` if not final, or resend its webhook if final with it.

    Returns "settled" or "resent". A payment final with the other status is a StateConflict.
    Settling by hand moves no money, so it is allowed only where `may_settle` (test keys).
    """
    if status not in (Status.SUCCESS, Status.FAILED):
        raise ValueError("status must be SUCCESS or FAILED")
    if await repo.enqueue_resend(tid, mid, status) is not None:
        log.info("webhook.resend_queued", tid=tid, status=status.value)
        return "resent"
    payment = await repo.payment_by_tid(tid, mid)
    if payment is None:
        raise errors.PaymentNotFound(tid)
    if not payment.status.is_final:
        if not may_settle:
            raise errors.Forbidden("settling a payment by hand needs a test key (sk_test_)")
        approval_no = f"AP{int(time.time() * 1000)}" if status is Status.SUCCESS else None
        fail_reason = MANUAL_FAIL_REASON if status is Status.FAILED else None
        settled = await repo.settle_manual(tid, mid, status, approval_no, fail_reason,
                                           actor=actor)  # fmt: skip
        if settled is not None:
            log.info("payment.settled", tid=tid, status=status.value, by=actor)
            return "settled"
        # It became final between our statements: resend if it matches, else a conflict.
        return await trigger(repo, tid, status, mid=mid, actor=actor, may_settle=may_settle)
    if payment.status is status:
        # It became final with this very status after our resend found it not final: resend.
        return await trigger(repo, tid, status, mid=mid, actor=actor, may_settle=may_settle)
    raise errors.StateConflict(
        tid, payment.status.value,
        f"payment {tid} is already {payment.status.value}; it cannot become {status.value}",
    )  # fmt: skip
