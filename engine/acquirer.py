"""The acquirer client: asks the card network to approve a payment, by idempotent reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from engine.errors import AcquirerUnavailable
from engine.models import Claimed, Outcome, Status

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class AcquirerClient:
    """Authorizes payments over HTTP; the tid is the reference, so asking twice charges once."""

    session: aiohttp.ClientSession
    base_url: str
    timeout_seconds: float
    max_attempts: int

    async def _authorize_once(self, payment: Claimed) -> dict[str, Any]:
        body = {
            "reference": payment.tid,
            "amount": payment.amount,
            "currency": payment.currency,
            "orderId": payment.order_id,
        }
        try:
            async with self.session.post(
                f"{self.base_url}/authorize",
                json=body,
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            ) as resp:
                if resp.status >= 500:
                    raise AcquirerUnavailable(f"acquirer answered {resp.status}")
                if resp.status != 200:
                    # Not a business answer: the charge did not happen. Retry later, loudly.
                    text = (await resp.text())[:200]
                    log.error("acquirer.rejected_request", tid=payment.tid, status=resp.status,
                              body=text)  # fmt: skip
                    raise AcquirerUnavailable(f"acquirer refused the request ({resp.status})")
                answer: dict[str, Any] = await resp.json(content_type=None)
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AcquirerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def authorize(self, payment: Claimed) -> Outcome:
        """Approve or decline one payment; AcquirerUnavailable if no usable answer came."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
            retry=retry_if_exception_type(AcquirerUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                answer = await self._authorize_once(payment)
        return _outcome(payment, answer)


def _outcome(payment: Claimed, answer: dict[str, Any]) -> Outcome:
    status = answer.get("status")
    if status == "APPROVED" and isinstance(answer.get("approvalNo"), str):
        return Outcome(payment.id, Status.SUCCESS, approval_no=answer["approvalNo"])
    if status == "DECLINED":
        reason = answer.get("reason")
        if not (isinstance(reason, str) and reason):
            reason = "DECLINED"
        return Outcome(payment.id, Status.FAILED, fail_reason=reason)
    raise AcquirerUnavailable(f"acquirer answer not understood: {str(answer)[:200]}")
