"""Webhook dispatch from the outbox: claim due deliveries, POST the seed's JSON, record it.

Every attempt is signed the Standard Webhooks way (webhook-id, webhook-timestamp,
webhook-signature), with each active secret of the url's endpoint, or the default secret.

Delivery is at least once. The retry schedule lives in the database (next_attempt_at), so a
crash loses no retry; tenacity computes the backoff. After the last attempt a delivery is DEAD:
kept, listed, and sendable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import aiohttp
import structlog
from tenacity import AsyncRetrying, RetryCallState, wait_exponential_jitter

from engine import metrics, signing
from engine.errors import DatabaseUnavailable, WebhookRetryable
from engine.models import Delivery, Status
from engine.repository import Repository

log = structlog.get_logger()

USER_AGENT = "hamster-engine-webhooks/1"


def payload(d: Delivery) -> dict[str, Any]:
    """The seed's webhook body (key order as in the seed), plus the currency."""
    if d.event_status in ("REFUNDED", "REFUND_FAILED"):
        return _refund_payload(d)
    if d.event_status == Status.SUCCESS.value:
        return {
            "status": "SUCCESS",
            "code": "0000",
            "transactionId": d.tid,
            "approvalNo": d.approval_no,
            "amount": d.amount,
            "currency": d.currency,
            "echo": d.echo,
            "message": "Payment approved successfully",
        }
    return {
        "status": "FAILED",
        "code": "E001",
        "transactionId": d.tid,
        "amount": d.amount,
        "currency": d.currency,
        "echo": d.echo,
        "message": f"Payment failed: {d.fail_reason}",
    }


def _refund_payload(d: Delivery) -> dict[str, Any]:
    """A refund's outcome, in the shape of the seed's payment webhooks."""
    done = d.event_status == "REFUNDED"
    body: dict[str, Any] = {
        "status": d.event_status,
        "code": "0000" if done else "E002",
        "transactionId": d.tid,
        "refundId": d.refund_public_id,
        "amount": d.refund_amount,
        "refundedAmount": d.refunded_amount,
        "currency": d.currency,
        "echo": d.echo,
    }
    if done:
        body["refundNo"] = d.refund_no
        body["message"] = "Refund completed"
    else:
        body["message"] = f"Refund failed: {d.refund_fail_reason}"
    return body


class Pass(NamedTuple):
    """What one pass did: claimed, delivered, and the soonest retry it scheduled (seconds)."""

    claimed: int
    delivered: int
    retry_in: float | None


class Backoff:
    """Exponential backoff with jitter between delivery attempts (tenacity's strategy)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._wait = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return float(self._wait(state))


def signed_headers(d: Delivery, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """Headers of one attempt: a fresh timestamp, and a signature per secret over `body`."""
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # Stable across retries of the same event, so the merchant can deduplicate.
        "webhook-id": d.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(secrets, d.event_id, timestamp, body),
    }


async def send(
    session: aiohttp.ClientSession, d: Delivery, *, timeout: float, secrets: Sequence[str]
) -> int:
    """POST one delivery signed with `secrets`; returns the 2xx status, or WebhookRetryable."""
    body = json.dumps(payload(d), ensure_ascii=False, separators=(",", ":")).encode()
    try:
        # Inside the try: a malformed stored secret fails this attempt (recorded), not the pass.
        headers = signed_headers(d, body, secrets)
        async with session.post(
            d.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return resp.status
            raise WebhookRetryable(resp.status, f"merchant answered {resp.status}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise WebhookRetryable(None, f"{type(exc).__name__}: {exc}") from exc


async def _deliver(
    repo: Repository,
    session: aiohttp.ClientSession,
    d: Delivery,
    *,
    owner: str,
    timeout: float,
    max_attempts: int,
    backoff: Backoff,
    secrets: Sequence[str],
) -> float | None:
    """Send one delivery. Returns 0.0 if delivered, the retry delay if one was scheduled."""
    started = datetime.now(UTC)
    try:
        code = await send(session, d, timeout=timeout, secrets=secrets)
    except WebhookRetryable as exc:
        delay = backoff.delay(d.attempts)
        result = await repo.delivery_failed(
            d.id, owner, code=exc.status, error=exc.error, started=started,
            max_attempts=max_attempts, delay_seconds=delay,
        )  # fmt: skip
        if result is None:
            log.warning("webhook.record_lost_race", tid=d.tid, delivery=d.id)
            return None
        if result[0] == "DEAD":
            metrics.WEBHOOK_ATTEMPTS.labels("dead").inc()
            log.error("webhook.dead", tid=d.tid, delivery=d.id, attempts=result[1],
                      status=exc.status, error=exc.error)  # fmt: skip
            return None
        metrics.WEBHOOK_ATTEMPTS.labels("failed").inc()
        log.warning("webhook.failed", tid=d.tid, delivery=d.id, retry_count=d.attempts,
                    status=exc.status, error=exc.error, retry_in=round(delay, 3))  # fmt: skip
        return max(delay, 1e-3)
    if await repo.delivery_succeeded(d.id, owner, code, started, d.attempts):
        metrics.WEBHOOK_ATTEMPTS.labels("delivered").inc()
        log.info("webhook.sent", tid=d.tid, delivery=d.id, status=code, attempt=d.attempts)
        return 0.0
    log.warning("webhook.record_lost_race", tid=d.tid, delivery=d.id)
    return None


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
) -> Pass:
    """Send up to `batch_size` due webhooks; returns what it did and when to look again.

    Urls with no registered endpoint are signed with `default_secret`.
    """
    claimed = await repo.claim_deliveries(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0, None)
    try:
        try:
            # One round trip for the whole batch, not one per delivery.
            registered = await repo.active_secrets(sorted({d.url for d in claimed}))
        except DatabaseUnavailable:
            # Nothing was sent: hand the claims back now rather than when their leases expire.
            with contextlib.suppress(DatabaseUnavailable):
                await repo.release_deliveries(owner, [d.id for d in claimed])
            raise
        results = await asyncio.gather(*(
            _deliver(repo, session, d, owner=owner, timeout=timeout,
                     max_attempts=max_attempts, backoff=backoff,
                     secrets=registered.get(d.url) or [default_secret])
            for d in claimed
        ))  # fmt: skip
    except asyncio.CancelledError:
        await asyncio.shield(repo.release_deliveries(owner, [d.id for d in claimed]))
        raise
    delivered = sum(1 for r in results if r == 0.0)
    retries = [r for r in results if r]
    return Pass(len(claimed), delivered, min(retries) if retries else None)


async def reap(repo: Repository, *, limit: int = 1000) -> int:
    """Deliveries whose worker died mid-send go back to PENDING; returns how many."""
    n = await repo.reap_deliveries(limit)
    if n:
        log.warning("webhook.lease_expired", count=n)
    return n
