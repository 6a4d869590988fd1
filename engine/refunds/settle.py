"""The worker's refund pass: settle accepted refunds with the payment's provider.

Exactly like a payment: claimed with a lease, an unknown outcome inquired before any resend, a
refusal flagged for a person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

import structlog

from engine import metrics
from engine.models import ClaimedRefund, RefundOutcome
from engine.payments.claim import REFUND, Claimer, Pass, answer_all, ask, requeue
from engine.providers.protocol import Provider
from engine.store.repository import Repository

log = structlog.get_logger()


def _answer(providers: Mapping[str, Provider], r: ClaimedRefund) -> Awaitable[RefundOutcome]:
    return ask(
        providers,
        r,
        inquire=("inquire_refund", lambda p: p.inquire_refund(r)),
        send=("refund", lambda p: p.refund(r)),
        kind="refund",
        refund=r.public_id,
    )


async def run_once(
    repo: Repository,
    providers: Mapping[str, Provider],
    claimer: Claimer,
) -> Pass:
    """Claim up to a batch of due refunds and settle what their providers answered."""
    owner, policy = claimer.owner, claimer.policy
    claimed = await repo.refunds.claim_refunds(owner, claimer.batch_size, claimer.lease_seconds)
    if not claimed:
        return Pass(0, 0)
    outcomes, requeues = await answer_all(
        claimed,
        lambda r: _answer(providers, r),
        give_back=lambda: repo.refunds.release_refunds(
            owner, [r.id for r in claimed], unknown=True
        ),
        requeue_of=lambda r, exc, now: requeue(
            r, exc, policy, now, REFUND, refund=r.public_id, tid=r.tid
        ),
    )
    settled = await repo.refunds.settle_refunds(owner, outcomes)
    by_id = {o.id: o for o in outcomes}
    for r in claimed:
        if r.public_id in settled:
            metrics.REFUNDS_SETTLED.labels(by_id[r.id].status.value).inc()
            log.info(
                "refund.settled", refund=r.public_id, tid=r.tid, status=by_id[r.id].status.value
            )
        elif r.id in by_id:
            log.warning("refund.settle_lost_race", refund=r.public_id, tid=r.tid)
    await repo.refunds.requeue_refunds(owner, requeues)
    return Pass.of(len(claimed), len(settled), requeues)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Refunds whose worker died go back to REFUND_PENDING; returns how many."""
    reaped = await repo.refunds.reap_refunds(limit)
    for public_id, owner in reaped:
        log.warning("refund.lease_expired", refund=public_id, dead_worker=owner)
    return len(reaped)
