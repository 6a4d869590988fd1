"""What a payment provider (acquirer, payment method) must do, and how it may fail.

A new provider is one module with a class that has these methods, plus one line where the
worker builds its registry. The engine relies on the error classes to stay correct:

- ProviderUnavailable(maybe_processed=False): the request surely did not reach the provider
  (connection refused). Safe to send again.
- ProviderUnavailable(maybe_processed=True): timeout, reset, 5xx, an answer we cannot read.
  Money may have moved; the engine asks `inquire` before it may send the charge again.
- ProviderRejected: the provider refused us (authentication, signature). Not retried;
  the payment is flagged UNRESOLVED for a person.
"""

from __future__ import annotations

import re
from typing import Protocol

import structlog

from engine.models import Claimed, ClaimedRefund, Outcome, RefundOutcome

log = structlog.get_logger()

# What merchants are shown of a provider's answer: a reason code, never its free text.
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def reason_code(raw: str | None, fallback: str) -> str:
    """`raw` if it is an UPPER_SNAKE code, else `fallback` (the raw text goes to the log)."""
    if raw and _CODE.match(raw):
        return raw
    if raw:
        log.info("provider.reason_replaced", raw=raw[:500], code=fallback)
    return fallback


def registry_key(mode: str, name: str) -> str:
    """Where a worker's registry keeps provider `name` of `mode`: test and live never mix."""
    return f"{mode}:{name}"


class ProviderUnavailable(Exception):
    """No usable answer came; `maybe_processed` says whether money may have moved.

    `reason` is for the log; `code` is what a merchant may see (an UPPER_SNAKE reason code).
    """

    def __init__(self, reason: str, *, maybe_processed: bool, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_processed = maybe_processed
        self.code = code or ("OUTCOME_UNKNOWN" if maybe_processed else "PROVIDER_UNAVAILABLE")


class ProviderRejected(Exception):
    """The provider refused us, or its answer cannot be trusted; do not retry, flag it.

    `maybe_processed` is True when money may still have moved (e.g. an answer whose signature
    does not verify): the payment is then also marked outcome-unknown, so whoever resolves it
    asks the provider first.
    """

    def __init__(
        self, reason: str, *, maybe_processed: bool = False, code: str = "PROVIDER_REJECTED"
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.maybe_processed = maybe_processed
        self.code = code


class Provider(Protocol):
    """Settles payments of one kind. The payment's tid is the idempotency reference."""

    @property
    def name(self) -> str:
        """The registry name payments refer to (payment_processes.provider)."""
        ...

    async def authorize(self, payment: Claimed) -> Outcome:
        """Charge: an approval or a decline, or raise one of the errors above."""
        ...

    async def inquire(self, payment: Claimed) -> Outcome | None:
        """What happened to this reference: its outcome, or None if the provider has none."""
        ...

    async def refund(self, refund: ClaimedRefund) -> RefundOutcome:
        """Return money: REFUNDED, or REFUND_FAILED with the provider's reason."""
        ...

    async def inquire_refund(self, refund: ClaimedRefund) -> RefundOutcome | None:
        """What happened to this refund reference, or None if the provider has no record."""
        ...
