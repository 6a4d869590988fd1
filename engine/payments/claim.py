"""One poll pass over payments: claim a batch, ask the provider, settle by compare-and-set.

A call whose outcome is unknown (timeout, reset, 5xx) never fails the payment and is never
repeated blindly: the next attempt asks the provider what happened (`inquire`), and only if
the provider has no record is the charge sent again, with the same reference.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple, Protocol, TypeVar

import structlog

from engine import metrics
from engine.backoff import Backoff
from engine.models import Claimed, Outcome, Requeue, Status
from engine.providers.protocol import Provider, ProviderRejected, ProviderUnavailable, registry_key
from engine.store.repository import Repository

log = structlog.get_logger()


class Pass(NamedTuple):
    """What one pass did: rows claimed, rows settled, and when a requeued row falls due."""

    claimed: int
    settled: int
    retry_in: float | None = None

    @classmethod
    def of(cls, claimed: int, settled: int, requeues: Sequence[Requeue]) -> Pass:
        """A pass's result; it is due again when its soonest requeued item is."""
        delays = [r.delay for r in requeues if r.delay is not None]
        return cls(claimed, settled, min(delays) if delays else None)


class Policy(NamedTuple):
    """How payments without an answer are retried."""

    backoff: Backoff
    # How long an unknown outcome may stay unknown before the payment shows as UNRESOLVED.
    unresolved_after: timedelta
    # A payment sent to the provider's page (REQUIRES_ACTION) waits this long for the
    # customer, and is inquired about this often meanwhile (engine/payments/actions.py).
    action_expires_after: timedelta = timedelta(minutes=10)
    action_inquire_every: float = 30.0


class Claimer(NamedTuple):
    """Who claims, how much at a time, for how long, and how what fails is retried."""

    owner: str
    batch_size: int
    lease_seconds: float
    policy: Policy


class Answer(Protocol):
    """A provider's answer for a payment or a refund: its final state."""

    @property
    def status(self) -> StrEnum: ...


A = TypeVar("A", bound=Answer)


class Asked(Protocol):
    """What asking a provider needs of a claimed payment or refund."""

    @property
    def mode(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def outcome_unknown_since(self) -> datetime | None: ...


async def ask(
    providers: Mapping[str, Provider],
    item: Asked,
    *,
    inquire: tuple[str, Callable[[Provider], Awaitable[A | None]]],
    send: tuple[str, Callable[[Provider], Awaitable[A]]],
    kind: str,
    **ids: str,
) -> A:
    """The item's provider's answer: inquired first when an earlier call may have gone through.

    Shared by payments (inquire, authorize) and refunds (inquire_refund, refund); each call is
    named for the metrics. Raises what the provider raised.
    """
    provider = providers.get(registry_key(item.mode, item.provider))
    if provider is None:
        raise ProviderRejected(f"no provider named {item.provider!r} is configured for {item.mode}")
    if item.outcome_unknown_since is not None:
        with metrics.provider_call(provider.name, inquire[0]) as timed:
            found = await inquire[1](provider)
            timed["result"] = "no_record" if found is None else found.status.value.lower()
        if found is not None:
            log.info(f"{kind}.inquiry_resolved", status=found.status.value, **ids)
            return found
        # The provider never saw it: sending the call again cannot charge (or refund) twice.
        log.info(f"{kind}.inquiry_no_record", **ids)
    with metrics.provider_call(provider.name, send[0]) as timed:
        outcome = await send[1](provider)
        timed["result"] = outcome.status.value.lower()
    return outcome


def _answer(providers: Mapping[str, Provider], c: Claimed) -> Awaitable[Outcome]:
    return ask(
        providers,
        c,
        inquire=("inquire", lambda p: p.inquire(c)),
        send=("authorize", lambda p: p.authorize(c)),
        kind="payment",
        tid=c.tid,
    )


class States(NamedTuple):
    """What a claimed item is called in the logs, and the states it goes back to."""

    kind: str
    pending: str
    unresolved: str


PAYMENT = States("payment", "PENDING", "UNRESOLVED")
REFUND = States("refund", "REFUND_PENDING", "REFUND_UNRESOLVED")


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
    states: States,
    **ids: str,
) -> Requeue:
    """How a claimed item without an outcome goes back: when, in which state, and why.

    Shared by payments and refunds: a refusal is flagged for a person; an unknown outcome is
    retried (inquiring first) with backoff, and shown as unresolved past the window.
    """
    # The log gets the provider's (or our) text; the row, which merchants see, a code.
    if isinstance(exc, ProviderRejected):
        metrics.ERRORS.labels("provider_rejected").inc()
        log.error(f"{states.kind}.flagged", reason=exc.reason, code=exc.code, **ids)
        return Requeue(item.id, states.unresolved, None, exc.maybe_processed, exc.code)
    if isinstance(exc, ProviderUnavailable):
        maybe, reason, code = exc.maybe_processed, exc.reason, exc.code
    else:  # our own bug mid-call: the request may have gone out
        maybe, reason, code = True, f"{type(exc).__name__}: {exc}", "INTERNAL_ERROR"
        metrics.ERRORS.labels("internal").inc()
        log.error(f"{states.kind}.process_error", error=repr(exc), **ids)
    metrics.ERRORS.labels("outcome_unknown" if maybe else "provider_unavailable").inc()
    unknown = maybe or item.outcome_unknown_since is not None
    since = item.outcome_unknown_since or now
    delay = policy.backoff.delay(item.attempts)
    if unknown and now - since >= policy.unresolved_after:
        metrics.ERRORS.labels("unresolved").inc()
        log.error(
            f"{states.kind}.unresolved", reason=reason, unknown_since=since.isoformat(), **ids
        )
        return Requeue(item.id, states.unresolved, delay, True, code)
    log.warning(
        f"{states.kind}.provider_unavailable",
        reason=reason,
        attempt=item.attempts,
        outcome_unknown=unknown,
        retry_in=round(delay, 3),
        **ids,
    )
    return Requeue(item.id, states.pending, delay, maybe, code if unknown else None)


H = TypeVar("H")


async def answer_all(
    claimed: Sequence[H],
    answer: Callable[[H], Awaitable[A]],
    *,
    give_back: Callable[[], Awaitable[object]],
    requeue_of: Callable[[H, Exception, datetime], Requeue],
) -> tuple[list[A], list[Requeue]]:
    """Each claimed item's answer, or how it goes back without one (payments and refunds)."""
    try:
        answers = await asyncio.gather(*(answer(c) for c in claimed), return_exceptions=True)
    except asyncio.CancelledError:
        # Shutting down mid-call: hand the items back now rather than at lease expiry. The
        # calls were in flight, so their outcome is unknown.
        await asyncio.shield(give_back())
        raise
    now = datetime.now(UTC)
    outcomes: list[A] = []
    requeues: list[Requeue] = []
    for c, got in zip(claimed, answers, strict=True):
        if isinstance(got, Exception):
            requeues.append(requeue_of(c, got, now))
        elif isinstance(got, BaseException):
            raise got  # CancelledError or worse: not ours to swallow
        else:
            outcomes.append(got)
    return outcomes, requeues


async def run_once(
    repo: Repository,
    providers: Mapping[str, Provider],
    claimer: Claimer,
) -> Pass:
    """Claim up to a batch of due payments and settle what their providers answered."""
    owner, policy = claimer.owner, claimer.policy
    claimed = await repo.payments.claim_pending(owner, claimer.batch_size, claimer.lease_seconds)
    if not claimed:
        return Pass(0, 0)
    for c in claimed:
        log.debug("payment.claimed", tid=c.tid, attempt=c.attempts, worker=owner)
    outcomes, requeues = await answer_all(
        claimed,
        lambda c: _answer(providers, c),
        give_back=lambda: repo.payments.release(owner, [c.id for c in claimed], 0, unknown=True),
        requeue_of=lambda c, exc, now: requeue(c, exc, policy, now, PAYMENT, tid=c.tid),
    )
    actions = [o for o in outcomes if o.status is Status.REQUIRES_ACTION]
    if actions:
        outcomes = [o for o in outcomes if o.status is not Status.REQUIRES_ACTION]
        waiting = await repo.payments.require_action(
            owner,
            actions,
            expires_in=policy.action_expires_after.total_seconds(),
            inquire_in=policy.action_inquire_every,
        )
        for w in waiting:
            log.info("payment.requires_action", tid=w.tid, token=w.atom_token_id, worker=owner)
        if len(waiting) < len(actions):
            log.warning("payment.settle_lost_race", count=len(actions) - len(waiting))
    settled = await repo.payments.settle(owner, outcomes)
    provider_of = {c.id: c.provider for c in claimed}
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for s in settled:
        counts[s.status.value, provider_of[s.id]] += 1
        log.info("payment.settled", tid=s.tid, status=s.status.value, worker=owner)
    for (status, provider), n in counts.items():  # one write per series, not per payment
        metrics.PAYMENTS_SETTLED.labels(status, provider).inc(n)
    lost = {o.id for o in outcomes} - {s.id for s in settled}
    for c in claimed:
        if c.id in lost:
            # Someone else settled it (manual trigger) or our lease expired and was reaped.
            log.warning("payment.settle_lost_race", tid=c.tid, worker=owner)
    await repo.payments.requeue(owner, requeues)
    return Pass.of(len(claimed), len(settled), requeues)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Put payments whose worker died (lease expired) back to PENDING; returns how many."""
    reaped = await repo.payments.reap_payments(limit)
    for tid, owner in reaped:
        log.warning("payment.lease_expired", tid=tid, dead_worker=owner)
    return len(reaped)
