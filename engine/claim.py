"""One poll pass over payments: claim a batch, ask the provider, settle by compare-and-set.

A call whose outcome is unknown (timeout, reset, 5xx) never fails the payment and is never
repeated blindly: the next attempt asks the provider what happened (`inquire`), and only if
the provider has no record is the charge sent again, with the same reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import structlog

from engine.models import Claimed, Outcome, Requeue, Status
from engine.provider import Provider, ProviderRejected, ProviderUnavailable
from engine.repository import Repository
from engine.webhooks import Backoff

log = structlog.get_logger()


class Pass(NamedTuple):
    """What one pass did: rows claimed, rows settled, and when a requeued row falls due."""

    claimed: int
    settled: int
    retry_in: float | None = None


class Policy(NamedTuple):
    """How payments without an answer are retried."""

    backoff: Backoff
    # How long an unknown outcome may stay unknown before the payment shows as UNRESOLVED.
    unresolved_after: timedelta


async def _decide(provider: Provider, c: Claimed) -> Outcome:
    if c.outcome_unknown_since is not None:
        found = await provider.inquire(c)
        if found is not None:
            log.info("payment.inquiry_resolved", tid=c.tid, status=found.status.value)
            return found
        # The provider never saw it: sending the charge again cannot charge twice.
        log.info("payment.inquiry_no_record", tid=c.tid)
    return await provider.authorize(c)


async def _answer(providers: Mapping[str, Provider], c: Claimed) -> Outcome:
    provider = providers.get(c.provider)
    if provider is None:
        raise ProviderRejected(f"no provider named {c.provider!r} is configured")
    return await _decide(provider, c)


def _requeue(c: Claimed, exc: BaseException, policy: Policy, now: datetime) -> Requeue:
    if isinstance(exc, ProviderRejected):
        log.error("payment.flagged", tid=c.tid, reason=exc.reason)
        return Requeue(c.id, Status.UNRESOLVED, None, exc.maybe_processed, exc.reason)
    if isinstance(exc, ProviderUnavailable):
        maybe, reason = exc.maybe_processed, exc.reason
    else:  # our own bug mid-call: the request may have gone out
        maybe, reason = True, f"{type(exc).__name__}: {exc}"
        log.error("payment.process_error", tid=c.tid, error=repr(exc))
    unknown = maybe or c.outcome_unknown_since is not None
    since = c.outcome_unknown_since or now
    delay = policy.backoff.delay(c.attempts)
    if unknown and now - since >= policy.unresolved_after:
        log.error("payment.unresolved", tid=c.tid, reason=reason, unknown_since=since.isoformat())
        return Requeue(c.id, Status.UNRESOLVED, delay, True, reason)
    log.warning("payment.provider_unavailable", tid=c.tid, reason=reason, attempt=c.attempts,
                outcome_unknown=unknown, retry_in=round(delay, 3))  # fmt: skip
    return Requeue(c.id, Status.PENDING, delay, maybe, reason if unknown else None)


async def run_once(
    repo: Repository,
    providers: Mapping[str, Provider],
    *,
    owner: str,
    batch_size: int,
    lease_seconds: float,
    policy: Policy,
) -> Pass:
    """Claim up to `batch_size` due payments and settle what their providers answered."""
    claimed = await repo.claim_pending(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0)
    for c in claimed:
        log.info("payment.claimed", tid=c.tid, attempt=c.attempts, worker=owner)
    try:
        answers = await asyncio.gather(
            *(_answer(providers, c) for c in claimed), return_exceptions=True
        )
    except asyncio.CancelledError:
        # Shutting down mid-call: hand the rows back now rather than at lease expiry. The
        # calls were in flight, so their outcome is unknown.
        await asyncio.shield(repo.release(owner, [c.id for c in claimed], 0, unknown=True))
        raise
    now = datetime.now(UTC)
    outcomes: list[Outcome] = []
    requeues: list[Requeue] = []
    for c, answer in zip(claimed, answers, strict=True):
        if isinstance(answer, Outcome):
            outcomes.append(answer)
        elif isinstance(answer, Exception):
            requeues.append(_requeue(c, answer, policy, now))
        else:
            raise answer  # CancelledError or worse: not ours to swallow
    settled = await repo.settle(owner, outcomes)
    for s in settled:
        log.info("payment.settled", tid=s.tid, status=s.status.value, worker=owner)
    lost = {o.id for o in outcomes} - {s.id for s in settled}
    for c in claimed:
        if c.id in lost:
            # Someone else settled it (manual trigger) or our lease expired and was reaped.
            log.warning("payment.settle_lost_race", tid=c.tid, worker=owner)
    await repo.requeue(owner, requeues)
    delays = [r.delay for r in requeues if r.delay is not None]
    return Pass(len(claimed), len(settled), min(delays) if delays else None)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Put payments whose worker died (lease expired) back to PENDING; returns how many."""
    reaped = await repo.reap_payments(limit)
    for tid, owner in reaped:
        log.warning("payment.lease_expired", tid=tid, dead_worker=owner)
    return len(reaped)
