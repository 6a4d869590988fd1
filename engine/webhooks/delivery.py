"""Webhook dispatch from the outbox: claim due deliveries, POST the seed's JSON, record it.

Every attempt is signed the Standard Webhooks way (webhook-id, webhook-timestamp,
webhook-signature), with each active secret of the url's endpoint, or the default secret.

Delivery is at least once. The retry schedule lives in the database (next_attempt_at), so a
crash loses no retry; tenacity computes the backoff. After the last attempt a delivery is DEAD:
kept, listed, and sendable again. A url the egress policy refuses is DEAD at once.

What a merchant sees of a failure (last_error) is a short reason code; the detail is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import aiohttp
import structlog

from engine import metrics
from engine.backoff import Backoff
from engine.errors import DatabaseUnavailable, WebhookRetryable
from engine.models import Delivery, Status
from engine.store.repository import Delivered, Repository
from engine.webhooks import egress, signing

log = structlog.get_logger()

USER_AGENT = "hamster-engine-webhooks/1"
# The event a merchant asks for to check its endpoint (POST /api/webhook-endpoints/{id}/test).
TEST_EVENT = "TEST"
# Of a merchant's answer only the status counts: this much of its body is read and dropped.
BODY_CAP = 4096
# Of what was read, this many characters are kept with the attempt, for people to read.
EXCERPT_CHARS = 500


@dataclass(slots=True)
class Capture:
    """One attempt as it went out and the start of its answer, kept with the attempt."""

    headers: dict[str, str] | None = None
    body: str | None = None
    excerpt: str | None = None


def payload(d: Delivery) -> dict[str, Any]:
    """The seed's webhook body (key order as in the seed), plus the currency."""
    if d.event_status in ("REFUNDED", "REFUND_FAILED"):
        return _refund_payload(d)
    if d.event_status == TEST_EVENT:
        return {
            "status": TEST_EVENT,
            "code": "TEST",
            "endpointId": d.endpoint_id,
            "mode": d.mode,
            "message": "A test event: this endpoint receives and verifies our webhooks",
        }
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
    session: aiohttp.ClientSession,
    d: Delivery,
    *,
    timeout: float,
    secrets: Sequence[str],
    policy: egress.Policy,
    capture: Capture | None = None,
) -> int:
    """POST one delivery signed with `secrets`; returns the 2xx status.

    `capture`, if given, receives the headers and body sent and an excerpt of the answer.

    Raises egress.EgressRefused if `policy` refuses the url, else WebhookRetryable with a
    reason code (`timeout`, `connect_failed`, `http_503`, `redirect` ...).
    """
    body = json.dumps(payload(d), ensure_ascii=False, separators=(",", ":")).encode()
    try:
        # Inside the try: a malformed stored secret fails this attempt (recorded), not the pass.
        headers = signed_headers(d, body, secrets)
    except ValueError as exc:
        raise WebhookRetryable(None, "invalid_secret") from exc
    if capture is not None:
        capture.headers, capture.body = headers, body.decode()
    # Checked before every attempt, not only at registration: DNS answers change.
    await egress.check_url(d.url, policy)
    try:
        async with session.post(
            d.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            # The session's connect timeout stays; `timeout` bounds the whole attempt.
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=session.timeout.sock_connect),
        ) as resp:
            read = await _drain(resp)
            if capture is not None:
                capture.excerpt = read[: EXCERPT_CHARS * 4].decode(errors="replace")[:EXCERPT_CHARS]
            if 200 <= resp.status < 300:
                return resp.status
            # A redirect is never followed: it could point anywhere, inside our network too.
            reason = "redirect" if 300 <= resp.status < 400 else f"http_{resp.status}"
            raise WebhookRetryable(resp.status, reason)
    except TimeoutError as exc:
        raise WebhookRetryable(None, "timeout") from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise WebhookRetryable(None, "dns_failed") from exc
    except aiohttp.ClientSSLError as exc:
        raise WebhookRetryable(None, "tls_failed") from exc
    except aiohttp.ClientConnectorError as exc:
        raise WebhookRetryable(None, "connect_failed") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise WebhookRetryable(None, "disconnected") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise WebhookRetryable(None, "request_failed") from exc


async def _drain(resp: aiohttp.ClientResponse) -> bytes:
    """Read at most BODY_CAP bytes of the answer; returns them.

    A short body read to its end lets the connection be reused; past the cap (or if the body
    is slow) the connection is closed instead, so no answer can grow our memory or hold us.
    """
    left = BODY_CAP
    read = bytearray()
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        while left > 0:
            chunk = await resp.content.read(left)
            if not chunk:
                return bytes(read)
            read += chunk
            left -= len(chunk)
        if resp.content.at_eof():
            return bytes(read)
    resp.close()
    return bytes(read)


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
    result = await repo.delivery_failed(
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
    result = await repo.delivery_failed(
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
    recorded = await repo.deliveries_succeeded(
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
            metrics.WEBHOOK_ATTEMPTS.labels("delivered").inc()
            log.info("webhook.sent", tid=d.tid, delivery=d.id, status=s.result, attempt=d.attempts)
        else:
            log.warning("webhook.record_lost_race", tid=d.tid, delivery=d.id)
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
    n = await repo.hasten_deliveries(sorted(urls))
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
    claimed = await repo.claim_deliveries(owner, batch_size, lease_seconds)
    if not claimed:
        return Pass(0, 0, None)
    try:
        try:
            # One round trip for the whole batch, not one per delivery.
            registered = await repo.endpoint_secrets(claimed)
        except DatabaseUnavailable:
            # Nothing was sent: hand the claims back now rather than when their leases expire.
            with contextlib.suppress(DatabaseUnavailable):
                await repo.release_deliveries(owner, [d.id for d in claimed])
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
        await asyncio.shield(repo.release_deliveries(owner, [d.id for d in claimed]))
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
    n = await repo.reap_deliveries(limit)
    if n:
        log.warning("webhook.lease_expired", count=n)
    return n
