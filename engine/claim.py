"""One poll pass over payments: claim a batch, ask the acquirer, settle by compare-and-set."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import structlog

from engine.acquirer import AcquirerClient
from engine.errors import AcquirerUnavailable
from engine.models import Outcome
from engine.repository import Repository

log = structlog.get_logger()


class Pass(NamedTuple):
    """What one pass did: rows claimed, rows settled, and when a requeued row falls due."""

    claimed: int
    settled: int
    retry_in: float | None = None


async def run_once(
    repo: Repository,
    acquirer: AcquirerClient,
    *,
    owner: str,
    batch_size: int,
    lease_seconds: float,
    requeue_seconds: float,
) -> Pass:
    """Claim up to `batch_size` PENDING payments, settle what the acquirer answered.

    A payment the acquirer could not answer for goes back to PENDING (never FAILED: its
    outcome is unknown, and asking again by the same reference cannot charge twice).
    """
    claimed = await repo.claim_pending(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0)
    for c in claimed:
        log.info("payment.claimed", tid=c.tid, attempt=c.attempts, worker=owner)
    ids = [c.id for c in claimed]
    try:
        answers = await asyncio.gather(
            *(acquirer.authorize(c) for c in claimed), return_exceptions=True
        )
    except asyncio.CancelledError:
        # Shutting down mid-call: hand the rows back now rather than at lease expiry.
        await asyncio.shield(repo.release(owner, ids, 0))
        raise
    outcomes: list[Outcome] = []
    retry: list[int] = []
    for c, answer in zip(claimed, answers, strict=True):
        if isinstance(answer, Outcome):
            outcomes.append(answer)
        elif isinstance(answer, AcquirerUnavailable):
            log.warning("payment.acquirer_unavailable", tid=c.tid, reason=answer.reason,
                        attempt=c.attempts)  # fmt: skip
            retry.append(c.id)
        else:
            log.error("payment.process_error", tid=c.tid, error=repr(answer))
            retry.append(c.id)
    settled = await repo.settle(owner, outcomes)
    for s in settled:
        log.info("payment.settled", tid=s.tid, status=s.status.value, worker=owner)
    lost = {o.id for o in outcomes} - {s.id for s in settled}
    for c in claimed:
        if c.id in lost:
            # Someone else settled it (manual trigger) or our lease expired and was reaped.
            log.warning("payment.settle_lost_race", tid=c.tid, worker=owner)
    if retry:
        await repo.release(owner, retry, requeue_seconds)
    return Pass(len(claimed), len(settled), requeue_seconds if retry else None)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Put payments whose worker died (lease expired) back to PENDING; returns how many."""
    reaped = await repo.reap_payments(limit)
    for tid, owner in reaped:
        log.warning("payment.lease_expired", tid=tid, dead_worker=owner)
    return len(reaped)
