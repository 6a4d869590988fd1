"""The manual webhook trigger: settle a payment by hand, or send its webhook again."""

from __future__ import annotations

import time

import structlog

from engine import errors, metrics
from engine.models import Status
from engine.store.repository import Repository

log = structlog.get_logger()

MANUAL_FAIL_REASON = "MANUAL_TRIGGER"


async def trigger(
    repo: Repository,
    tid: str,
    status: Status,
    *,
    mid: str,
    mode: str,
    actor: str,
    resends_per_window: int = 5,
    resend_window_seconds: float = 600.0,
) -> str:
    """Settle `tid` with `status` if PENDING, or resend its webhook if final with it.

    Returns "settled" or "resent". Settling by hand moves no money, so it is allowed only for
    test payments (Forbidden otherwise), and only from PENDING: a payment a worker has claimed
    or lost track of (PROCESSING, UNRESOLVED) may have moved money at the provider, so it is a
    StateConflict. A payment final with the other status is a StateConflict too. Resends are
    limited per payment (ResendLimited).
    """
    if status not in (Status.SUCCESS, Status.FAILED):
        raise ValueError("status must be SUCCESS or FAILED")
    for _ in range(3):  # each turn follows a state change that raced us; three is plenty
        queued = await repo.deliveries.enqueue_resend(
            tid, mid, mode, status, per_window=resends_per_window, window=resend_window_seconds
        )
        if queued is not None:
            log.info("webhook.resend_queued", tid=tid, status=status.value)
            return "resent"
        payment = await repo.payments.payment_by_tid(tid, mid, mode)
        if payment is None:
            raise errors.PaymentNotFound(tid)
        if payment.status is status:
            continue  # it became final with this very status after our resend looked: resend
        if payment.status.is_final:
            raise errors.StateConflict(
                tid,
                payment.status.value,
                f"payment {tid} is already {payment.status.value}; it cannot become {status.value}",
            )
        if mode != "test":
            raise errors.Forbidden("settling a payment by hand needs a test key (sk_test_)")
        if payment.status is not Status.PENDING:
            raise errors.StateConflict(
                tid,
                payment.status.value,
                f"payment {tid} is {payment.status.value}: the provider may already have "
                "moved money, so only a PENDING payment can be settled by hand",
            )
        approval_no = f"AP{int(time.time() * 1000)}" if status is Status.SUCCESS else None
        fail_reason = MANUAL_FAIL_REASON if status is Status.FAILED else None
        settled = await repo.payments.settle_manual(
            tid, mid, status, approval_no, fail_reason, actor=actor
        )
        if settled is not None:
            metrics.PAYMENTS_SETTLED.labels(status.value, "manual").inc()
            log.info("payment.settled", tid=tid, status=status.value, by=actor)
            return "settled"
        log.info("payment.manual_settle_lost_race", tid=tid)
    raise errors.StateConflict(tid, "CHANGING", f"payment {tid} kept changing; try again")
