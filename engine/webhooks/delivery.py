"""Webhook dispatch from the outbox: claim due deliveries, send each (sending.py), record it.

Delivery is at least once. The retry schedule lives in the database (next_attempt_at), so a
crash loses no retry; engine.backoff computes the delay, as for payments and refunds. After
the last attempt a delivery is DEAD: kept, listed, and sendable again. A url the egress
policy refuses is DEAD at once.

What a merchant sees of a failure (last_error) is a short reason code; the detail is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import aiohttp
import structlog

from engine import metrics
from engine.backoff import Backoff
from engine.errors import DatabaseUnavailable, WebhookRetryable
from engine.models import Delivery
from engine.store.deliveries import Delivered
from engine.store.repository import Repository
from engine.webhooks import egress
from engine.webhooks.sending import Capture, send

log = structlog.get_logger()


class Pass(NamedTuple):
    """What one pass did: claimed, delivered, and the soonest retry it scheduled (seconds)."""

    claimed: int
    delivered: int
    retry_in: float | None


class _Sent(NamedTuple):
    """One attempt's result: the 2xx code, or why it failed."""

    delivery: Delivery
    started: datetime
    result: int | WebhookRetryable | egress.EgressRefused
    capture: Capture | None = None


async def _attempt(
    session: aiohttp.ClientSession,
    d: Delivery,
    *,
    timeout: float,
    secrets: Sequence[str],
    policy: egress.Policy,
) -> _Sent:
    started = datetime.now(UTC)
    capture = Capture()
    try:
        status = await send(
            session, d, timeout=timeout, secrets=secrets, policy=policy, capture=capture
        )
    except egress.EgressRefused as exc:
        if exc.reason in egress.TRANSIENT:
            return _Sent(d, started, _retryable(exc), capture)
        return _Sent(d, started, exc, capture)
    except WebhookRetryable as exc:
        return _Sent(d, started, exc, capture)
    return _Sent(d, started, status, capture)


def _captured(sent: _Sent) -> tuple[dict[str, str] | None, str | None, str | None]:
    c = sent.capture or Capture()
    return c.headers, c.body, c.excerpt


def _retryable(exc: egress.EgressRefused) -> WebhookRetryable:
    """A refusal that may pass next time (a failed lookup), as an ordinary failed attempt."""
    failure = WebhookRetryable(None, exc.reason)
    failure.__cause__ = exc
    return failure


async def _refused(repo: Repository, sent: _Sent, exc: egress.EgressRefused, *, owner: str) -> None:
    """Record a delivery the egress policy refused: DEAD now, with the reason listed."""
    d = sent.delivery
    result = await repo.deliveries.delivery_failed(
        d.id,
        owner,
        code=None,
        error=f"refused:{exc.reason}",
        started=sent.started,
        capture=_captured(sent),
        max_attempts=0,
        delay_seconds=0,  # no attempt left: DEAD at once, never retried blindly
    )
    if result is None:
        log.warning("webhook.record_lost_race", tid=d.tid, delivery=d.id)
        return
    metrics.WEBHOOK_ATTEMPTS.labels("dead").inc()
    log.error("webhook.refused", tid=d.tid, delivery=d.id, reason=exc.reason, detail=exc.detail)


async def _failed(
    repo: Repository,
    sent: _Sent,
    exc: WebhookRetryable,
    *,
    owner: str,
    max_attempts: int,
    backoff: Backoff,
) -> float | None:
    """Record a failed attempt; returns the retry delay, or None if none was scheduled."""
    d = sent.delivery
    delay = backoff.delay(d.attempts)
    # The merchant sees the code; what exactly went wrong is for our log only.
    detail = repr(exc.__cause__) if exc.__cause__ is not None else None
    result = await repo.deliveries.delivery_failed(
        d.id,
        owner,
        code=exc.status,
        error=exc.error,
        started=sent.started,
        capture=_captured(sent),
        max_attempts=1 if exc.final else max_attempts,
        delay_seconds=delay,
    )
    if result is None:
        log.warning("webhook.record_lost_race", tid=d.tid, delivery=d.id)
        return None
    if result[0] == "DEAD":
        metrics.WEBHOOK_ATTEMPTS.labels("dead").inc()
        log.error(
            "webhook.dead",
            tid=d.tid,
            delivery=d.id,
            attempts=result[1],
            status=exc.status,
            error=exc.error,
            detail=detail,
        )
        return None
    metrics.WEBHOOK_ATTEMPTS.labels("failed").inc()
    log.warning(
        "webhook.failed",
        tid=d.tid,
        delivery=d.id,
        retry_count=d.attempts,
        status=exc.status,
        error=exc.error,
        detail=detail,
        retry_in=round(delay, 3),
    )
    return max(delay, 1e-3)


async def _record(
    repo: Repository, sent: Sequence[_Sent], *, owner: str, max_attempts: int, backoff: Backoff
) -> tuple[int, list[float]]:
    """Record a pass's attempts: every success in one statement, each failure on its own.

    Returns how many were recorded delivered, and the retry delays scheduled (0 if waiting
    deliveries were made due because their url answered 2xx again).
    """
    ok = [s for s in sent if isinstance(s.result, int)]
    recorded = await repo.deliveries.deliveries_succeeded(
        owner,
        [
            Delivered(s.delivery.id, s.result, s.started, s.delivery.attempts, *_captured(s))
            for s in ok
            if isinstance(s.result, int)
        ],
    )
    for s in ok:
        d = s.delivery
        if d.id in recorded:
            log.info("webhook.sent", tid=d.tid, delivery=d.id, status=s.result, attempt=d.attempts)
        else:
            log.warning("webhook.record_lost_race", tid=d.tid, delivery=d.id)
    if recorded:
        metrics.WEBHOOK_ATTEMPTS.labels("delivered").inc(len(recorded))
    hastened = await _hasten(repo, {s.delivery.url for s in ok if s.delivery.id in recorded})
    await asyncio.gather(
        *(
            _refused(repo, s, s.result, owner=owner)
            for s in sent
            if isinstance(s.result, egress.EgressRefused)
        )
    )
    delays = await asyncio.gather(
        *(
            _failed(repo, s, s.result, owner=owner, max_attempts=max_attempts, backoff=backoff)
            for s in sent
            if isinstance(s.result, WebhookRetryable)
        )
    )
    return len(recorded), [d for d in delays if d is not None] + ([1e-3] if hastened else [])


async def _hasten(repo: Repository, urls: set[str]) -> int:
    """Urls that answered 2xx: their deliveries waiting out a backoff are due now.

    A merchant back from an outage gets its backlog at once, not each event after its own
    (up to 12 h) backoff. Returns how many were made due.
    """
    if not urls:
        return 0
    n = await repo.deliveries.hasten_deliveries(sorted(urls))
    if n:
        log.info("webhook.hastened", count=n, urls=len(urls))
    return n


async def run_once(
    repo: Repository,
    session: aiohttp.ClientSession,
    *,
    owner: str,
    batch_size: int,
    lease_seconds: float,
    timeout: float,
    max_attempts: int,
    backoff: Backoff,
    default_secret: str,
    default_url: str,
    policy: egress.Policy,
) -> Pass:
    """Send up to `batch_size` due webhooks; returns what it did and when to look again.

    A delivery is signed with the active secrets of its payment's endpoint, which must be the
    payment's merchant's and mode's. One with no endpoint goes only to `default_url`, the
    operator's own receiver, signed with `default_secret`, which no merchant is shown.
    """
    claimed = await repo.deliveries.claim_deliveries(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0, None)
    try:
        try:
            # One round trip for the whole batch, not one per delivery.
            registered = await repo.endpoints.endpoint_secrets(claimed)
        except DatabaseUnavailable:
            # Nothing was sent: hand the claims back now rather than when their leases expire.
            with contextlib.suppress(DatabaseUnavailable):
                await repo.deliveries.release_deliveries(owner, [d.id for d in claimed])
            raise
        sent = await asyncio.gather(
            *(
                _attempt(session, d, timeout=timeout, secrets=secrets, policy=policy)
                if isinstance(secrets := _secrets(d, registered, default_secret, default_url), list)
                else _unsendable(d, secrets)
                for d in claimed
            )
        )
    except asyncio.CancelledError:
        await asyncio.shield(repo.deliveries.release_deliveries(owner, [d.id for d in claimed]))
        raise
    # Shielded: a shutdown now must not forget what the merchants already answered.
    delivered, retries = await asyncio.shield(
        _record(repo, sent, owner=owner, max_attempts=max_attempts, backoff=backoff)
    )
    return Pass(len(claimed), delivered, min(retries) if retries else None)


def _secrets(
    d: Delivery, registered: dict[int, list[str]], default_secret: str, default_url: str
) -> list[str] | str:
    """The secrets that sign `d`, or the reason it must not be sent at all."""
    if d.endpoint_id is None:
        # Only the operator's receiver is signed with the operator's secret; a url a merchant
        # named once (before endpoints were checked) gets no signature of ours.
        return [default_secret] if d.url == default_url else "no_endpoint"
    return registered.get(d.endpoint_id) or "endpoint_deleted"


async def _unsendable(d: Delivery, reason: str) -> _Sent:
    log.error("webhook.refused", tid=d.tid, delivery=d.id, reason=reason)
    return _Sent(d, datetime.now(UTC), WebhookRetryable(None, reason, final=True))


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Deliveries whose worker died mid-send go back to PENDING; returns how many."""
    n = await repo.deliveries.reap_deliveries(limit)
    if n:
        log.warning("webhook.lease_expired", count=n)
    return n
