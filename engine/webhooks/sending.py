"""One webhook attempt: the body (the seed's JSON), its Standard Webhooks signature, the POST.

Every attempt is signed the Standard Webhooks way (webhook-id, webhook-timestamp,
webhook-signature), with each active secret of the url's endpoint, or the default secret.
The url is checked against the egress policy before every attempt; only the status of the
merchant's answer counts, and a failure becomes a short reason code (`timeout`, `http_503`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from engine.errors import WebhookRetryable
from engine.models import Delivery, Status
from engine.webhooks import egress, signing

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
    # Checked before every attempt, not only at registration: DNS answers change.
    if capture is not None:
        capture.headers, capture.body = headers, body.decode()
    await egress.check_url(d.url, policy)
    try:
        async with session.post(
            d.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            # The session's connect timeout stays; `timeout` bounds the whole attempt.
            timeout=_timeout(timeout, session.timeout.sock_connect),
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


@functools.lru_cache(maxsize=64)
def _timeout(total: float, sock_connect: float | None) -> aiohttp.ClientTimeout:
    """One ClientTimeout (immutable) per setting, not one built for every attempt."""
    return aiohttp.ClientTimeout(total=total, sock_connect=sock_connect)


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
