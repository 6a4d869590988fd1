"""The card provider: the acquirer over HTTP (the simulator in development).

The tid is the idempotency reference. Only errors that prove the request never arrived are
retried within a call; anything that may have charged is left to the status inquiry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from engine.backoff import Backoff
from engine.models import Claimed, ClaimedRefund, Outcome, RefundOutcome, RefundStatus, Status
from engine.providers import protocol as provider
from engine.providers.protocol import ProviderRejected, ProviderUnavailable

log = structlog.get_logger()


# Between two tries of one call: 50 ms (plus jitter), doubling, at most 1 s.
RETRY_WAIT = Backoff(0.05, 1.0)


@dataclass(frozen=True, slots=True)
class AcquirerClient:
    """Authorizes and inquires over HTTP."""

    session: aiohttp.ClientSession
    base_url: str
    timeout_seconds: float
    max_attempts: int
    name: str = "card"
    # The same for every request (immutable), not built per request.
    _timeout: aiohttp.ClientTimeout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_timeout", aiohttp.ClientTimeout(total=self.timeout_seconds))

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, str]:
        async with self.session.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            timeout=self._timeout,
        ) as resp:
            return resp.status, await resp.text()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        # Only a connection never made proves the request never arrived: that alone is sent
        # again here, up to max_attempts. Anything else may have charged: no retry.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=RETRY_WAIT,
            retry=retry_if_exception_type(aiohttp.ClientConnectorError),
            reraise=True,
        )
        try:
            answer: tuple[int, str] = await retrying(self._send, method, path, body)
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnavailable(f"connect failed: {exc}", maybe_processed=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}", maybe_processed=True) from exc
        status, text = answer
        if status >= 500:
            raise ProviderUnavailable(
                f"acquirer answered {status}", maybe_processed=True, code=f"PROVIDER_HTTP_{status}"
            )
        if status in (401, 403):
            raise ProviderRejected(
                f"acquirer refused our credentials ({status})", code=f"PROVIDER_HTTP_{status}"
            )
        try:
            return status, json.loads(text) if text else None
        except ValueError as exc:
            raise ProviderUnavailable(
                f"unreadable answer ({status}): {text[:200]}", maybe_processed=True
            ) from exc

    async def authorize(self, payment: Claimed) -> Outcome:
        """Ask for an approval by reference; a decline is a final answer."""
        body = {
            "reference": payment.tid,
            "amount": payment.amount,
            "currency": payment.currency,
            "orderId": payment.order_id,
        }
        if payment.card_token is not None:  # a customer's registered card (checkout)
            body["cardToken"] = payment.card_token
        status, answer = await self._call("POST", "/authorize", body)
        if status != 200:
            # A 4xx is not a business answer, and the charge did not happen. Flag it.
            raise ProviderRejected(f"acquirer refused the request ({status}): {answer}")
        return _outcome(payment, answer)

    async def inquire(self, payment: Claimed) -> Outcome | None:
        """The acquirer's record of this reference, or None if it has none."""
        found = await self._record(f"/transactions/{payment.tid}", "inquiry")
        return None if found is None else _outcome(payment, found)

    async def refund(self, refund: ClaimedRefund) -> RefundOutcome:
        """Ask for money back, by the refund's own reference; a rejection is final."""
        body = {
            "reference": refund.public_id,
            "paymentReference": refund.tid,
            "amount": refund.amount,
            "currency": refund.currency,
        }
        status, answer = await self._call("POST", "/refunds", body)
        if status != 200:
            raise ProviderRejected(f"acquirer refused the refund request ({status}): {answer}")
        return _refund_outcome(refund, answer)

    async def inquire_refund(self, refund: ClaimedRefund) -> RefundOutcome | None:
        """The acquirer's record of this refund, or None if it has none."""
        found = await self._record(f"/refunds/{refund.public_id}", "refund inquiry")
        return None if found is None else _refund_outcome(refund, found)

    async def _record(self, path: str, what: str) -> Any:
        """GET one of the acquirer's records: its answer, or None if it has none (404)."""
        status, answer = await self._call("GET", path, None)
        if status == 404:
            return None
        if status != 200:
            raise ProviderRejected(f"acquirer refused the {what} ({status}): {answer}")
        return answer


def _refund_outcome(refund: ClaimedRefund, answer: Any) -> RefundOutcome:
    if isinstance(answer, dict) and answer.get("status") == "REFUNDED":
        number = answer.get("refundNo")
        return RefundOutcome(
            refund.id, RefundStatus.REFUNDED, refund_no=number if isinstance(number, str) else None
        )
    if isinstance(answer, dict) and answer.get("status") == "REJECTED":
        reason = answer.get("reason")
        code = provider.reason_code(reason if isinstance(reason, str) else None, "REJECTED")
        return RefundOutcome(refund.id, RefundStatus.REFUND_FAILED, fail_reason=code)
    raise ProviderUnavailable(
        f"refund answer not understood: {answer!r:.200}", maybe_processed=True
    )


def _outcome(payment: Claimed, answer: Any) -> Outcome:
    if not isinstance(answer, dict):
        raise ProviderUnavailable(f"answer not understood: {answer!r:.200}", maybe_processed=True)
    status = answer.get("status")
    if status == "APPROVED" and isinstance(answer.get("approvalNo"), str):
        return Outcome(payment.id, Status.SUCCESS, approval_no=answer["approvalNo"])
    if status == "DECLINED":
        reason = answer.get("reason")
        code = provider.reason_code(reason if isinstance(reason, str) else None, "DECLINED")
        return Outcome(payment.id, Status.FAILED, fail_reason=code)
    raise ProviderUnavailable(f"answer not understood: {answer!r:.200}", maybe_processed=True)
