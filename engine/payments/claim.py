"""One poll pass over payments: claim a batch, ask the provider, settle by compare-and-set.

A call whose outcome is unknown (timeout, reset, 5xx) never fails the payment and is never
repeated blindly: the next attempt asks the provider what happened (`inquire`), and only if
the provider has no record is the charge sent again, with the same reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

import structlog

from engine import metrics
from engine.backoff import Backoff
from engine.models import Claimed, Outcome, Requeue
from engine.providers.protocol import Provider, ProviderRejected, ProviderUnavailable, registry_key
from engine.store.repository import Repository

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
        with metrics.provider_call(provider.name, "inquire") as timed:
            found = await provider.inquire(c)
            timed["result"] = "no_record" if found is None else found.status.value.lower()
        if found is not None:
            log.info("payment.inquiry_resolved", tid=c.tid, status=found.status.value)
            return found
        # The provider never saw it: sending the charge again cannot charge twice.
        log.info("payment.inquiry_no_record", tid=c.tid)
    with metrics.provider_call(provider.name, "authorize") as timed:
        outcome = await provider.authorize(c)
        timed["result"] = outcome.status.value.lower()
    return outcome


async def _answer(providers: Mapping[str, Provider], c: Claimed) -> Outcome:
    provider = providers.get(registry_key(c.mode, c.provider))
    if provider is None:
        raise ProviderRejected(f"no provider named {c.provider!r} is configured for {c.mode}")
    return await _decide(provider, c)


class Held(Protocol):
    """What deciding a retry needs of a claimed payment or refund."""

    @property
    def id(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def outcome_unknown_since(self) -> datetime | None: ...


def requeue(
    item: Held,
    exc: BaseException,
    policy: Policy,
    now: datetime,
    *,
    kind: str,
    pending: str,
    unresolved: str,
    **ids: str,
) -> Requeue:
    """How a claimed item without an outcome goes back: when, in which state, and why.

    Shared by payments and refunds: a refusal is flagged for a person; an unknown outcome is
    retried (inquiring first) with backoff, and shown as unresolved past the window.
    """
    # The log gets the provider's (or our) text; the row, which merchants see, a code.
    if isinstance(exc, ProviderRejected):
        metrics.ERRORS.labels("provider_rejected").inc()
        log.error(f"{kind}.flagged", reason=exc.reason, code=exc.code, **ids)
        return Requeue(item.id, unresolved, None, exc.maybe_processed, exc.code)
    if isinstance(exc, ProviderUnavailable):
        maybe, reason, code = exc.maybe_processed, exc.reason, exc.code
    else:  # our own bug mid-call: the request may have gone out
        maybe, reason, code = True, f"{type(exc).__name__}: {exc}", "INTERNAL_ERROR"
        metrics.ERRORS.labels("internal").inc()
        log.error(f"{kind}.process_error", error=repr(exc), **ids)
    metrics.ERRORS.labels("outcome_unknown" if maybe else "provider_unavailable").inc()
    unknown = maybe or item.outcome_unknown_since is not None
    since = item.outcome_unknown_since or now
    delay = policy.backoff.delay(item.attempts)
    if unknown and now - since >= policy.unresolved_after:
        metrics.ERRORS.labels("unresolved").inc()
        log.error(f"{kind}.unresolved", reason=reason, unknown_since=since.isoformat(), **ids)
        return Requeue(item.id, unresolved, delay, True, code)
    log.warning(
        f"{kind}.provider_unavailable",
        reason=reason,
        attempt=item.attempts,
        outcome_unknown=unknown,
        retry_in=round(delay, 3),
        **ids,
    )
    return Requeue(item.id, pending, delay, maybe, code if unknown else None)


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
    claimed = await repo.payments.claim_pending(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0)
    for c in claimed:
        log.debug("payment.claimed", tid=c.tid, attempt=c.attempts, worker=owner)
    try:
        answers = await asyncio.gather(
            *(_answer(providers, c) for c in claimed), return_exceptions=True
        )
    except asyncio.CancelledError:
        # Shutting down mid-call: hand the rows back now rather than at lease expiry. The
        # calls were in flight, so their outcome is unknown.
        await asyncio.shield(repo.payments.release(owner, [c.id for c in claimed], 0, unknown=True))
        raise
    now = datetime.now(UTC)
    outcomes: list[Outcome] = []
    requeues: list[Requeue] = []
    for c, answer in zip(claimed, answers, strict=True):
        if isinstance(answer, Outcome):
            outcomes.append(answer)
        elif isinstance(answer, Exception):
            requeues.append(
                requeue(
                    c,
                    answer,
                    policy,
                    now,
                    kind="payment",
                    pending="PENDING",
                    unresolved="UNRESOLVED",
                    tid=c.tid,
                )
            )
        else:
            raise answer  # CancelledError or worse: not ours to swallow
    settled = await repo.payments.settle(owner, outcomes)
    provider_of = {c.id: c.provider for c in claimed}
    for s in settled:
        metrics.PAYMENTS_SETTLED.labels(s.status.value, provider_of[s.id]).inc()
        log.info("payment.settled", tid=s.tid, status=s.status.value, worker=owner)
    lost = {o.id for o in outcomes} - {s.id for s in settled}
    for c in claimed:
        if c.id in lost:
            # Someone else settled it (manual trigger) or our lease expired and was reaped.
            log.warning("payment.settle_lost_race", tid=c.tid, worker=owner)
    await repo.payments.requeue(owner, requeues)
    delays = [r.delay for r in requeues if r.delay is not None]
    return Pass(len(claimed), len(settled), min(delays) if delays else None)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Put payments whose worker died (lease expired) back to PENDING; returns how many."""
    reaped = await repo.payments.reap_payments(limit)
    for tid, owner in reaped:
        log.warning("payment.lease_expired", tid=tid, dead_worker=owner)
    return len(reaped)
