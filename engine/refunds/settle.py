"""The worker's refund pass: settle accepted refunds with the payment's provider.

Exactly like a payment: claimed with a lease, an unknown outcome inquired before any resend, a
refusal flagged for a person.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog

from engine import metrics
from engine.models import ClaimedRefund, RefundOutcome, Requeue
from engine.payments.claim import Pass, Policy, requeue
from engine.providers.protocol import Provider, ProviderRejected, registry_key
from engine.store.repository import Repository

log = structlog.get_logger()


async def _decide(provider: Provider, r: ClaimedRefund) -> RefundOutcome:
    if r.outcome_unknown_since is not None:
        with metrics.provider_call(provider.name, "inquire_refund") as timed:
            found = await provider.inquire_refund(r)
            timed["result"] = "no_record" if found is None else found.status.value.lower()
        if found is not None:
            log.info("refund.inquiry_resolved", refund=r.public_id, status=found.status.value)
            return found
        log.info("refund.inquiry_no_record", refund=r.public_id)
    with metrics.provider_call(provider.name, "refund") as timed:
        outcome = await provider.refund(r)
        timed["result"] = outcome.status.value.lower()
    return outcome


async def _answer(providers: Mapping[str, Provider], r: ClaimedRefund) -> RefundOutcome:
    provider = providers.get(registry_key(r.mode, r.provider))
    if provider is None:
        raise ProviderRejected(f"no provider named {r.provider!r} is configured for {r.mode}")
    return await _decide(provider, r)


async def run_once(
    repo: Repository,
    providers: Mapping[str, Provider],
    *,
    owner: str,
    batch_size: int,
    lease_seconds: float,
    policy: Policy,
) -> Pass:
    """Claim up to `batch_size` due refunds and settle what their providers answered."""
    claimed = await repo.refunds.claim_refunds(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0)
    try:
        answers = await asyncio.gather(
            *(_answer(providers, r) for r in claimed), return_exceptions=True
        )
    except asyncio.CancelledError:
        await asyncio.shield(
            repo.refunds.release_refunds(owner, [r.id for r in claimed], unknown=True)
        )
        raise
    now = datetime.now(UTC)
    outcomes: list[RefundOutcome] = []
    requeues: list[Requeue] = []
    for r, answer in zip(claimed, answers, strict=True):
        if isinstance(answer, RefundOutcome):
            outcomes.append(answer)
        elif isinstance(answer, Exception):
            requeues.append(
                requeue(
                    r,
                    answer,
                    policy,
                    now,
                    kind="refund",
                    pending="REFUND_PENDING",
                    unresolved="REFUND_UNRESOLVED",
                    refund=r.public_id,
                    tid=r.tid,
                )
            )
        else:
            raise answer
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
    delays = [q.delay for q in requeues if q.delay is not None]
    return Pass(len(claimed), len(settled), min(delays) if delays else None)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Refunds whose worker died go back to REFUND_PENDING; returns how many."""
    reaped = await repo.refunds.reap_refunds(limit)
    for public_id, owner in reaped:
        log.warning("refund.lease_expired", refund=public_id, dead_worker=owner)
    return len(reaped)
