"""The Atom provider: encrypted, signed authorize, status and refund calls, and callbacks.

The protocol is defined in engine/providers/atom_crypto.py. The tid is the merchTxnId, Atom's
idempotency reference for a charge; a refund's public id is the refundTxnId, its reference for a
refund. An
answer is believed only after its signature verifies: one that does not is
counted, logged as `atom.signature_failed` and raised as ProviderRejected, so the payment waits
for a person and a forged or corrupted answer can never settle it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog

from config import settings as config_settings
from config.settings import Settings
from engine import metrics
from engine.models import Claimed, ClaimedRefund, Outcome, RefundOutcome, RefundStatus, Status
from engine.providers import protocol as provider
from engine.providers.atom_crypto import (
    TXN_AUTH,
    TXN_REFUND,
    TXN_REFUND_STATUS,
    TXN_STATUS,
    AtomCredentials,
    AtomCryptoError,
    AtomSignatureError,
    derive_key,
)
from engine.providers.atom_messages import (
    APPROVED,
    DECLINED,
    NO_RECORD,
    REFUNDED,
    REJECTED,
    TOKEN_ISSUED,
    AtomAnswer,
    AtomCallback,
    AtomRefundAnswer,
    credentials,
    open_answer,
    open_refund_answer,
    seal_refund_request,
    seal_request,
    verify_callback,
)
from engine.providers.protocol import ProviderRejected, ProviderUnavailable

log = structlog.get_logger()

T = TypeVar("T")

# For a payment whose customer is at a browser: {"returnUrl", "callbackUrl"} of its AUTH.
HostedUrls = Callable[[Claimed], dict[str, str]]


class AtomProvider:
    """Charges, refunds and inquires at Atom over HTTP; counts answers failing their signature."""

    name = "atom"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        creds: AtomCredentials,
        timeout_seconds: float,
        hosted_urls: HostedUrls | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.creds = creds
        self.timeout_seconds = timeout_seconds
        # Without it every AUTH is a direct charge (the API's server-to-server payments).
        self.hosted_urls = hosted_urls
        # Answers and callbacks refused for their signature, since this provider was built.
        self.signature_failures = 0
        # Derive both keys now rather than on the first payment's call.
        derive_key(creds.req_enc_key)
        derive_key(creds.res_enc_key)

    @classmethod
    def from_settings(
        cls,
        session: aiohttp.ClientSession,
        settings: Settings,
        mode: str = "live",
        hosted_urls: HostedUrls | None = None,
    ) -> AtomProvider:
        """The provider the worker registers for `mode`, from ENGINE_[TEST_]ATOM_* settings."""
        return cls(
            session,
            config_settings.atom_url(settings, mode),
            credentials(settings, mode),
            settings.atom_timeout_seconds,
            hosted_urls,
        )

    def _signature_failed(
        self, exc: AtomSignatureError, tid: str | None, refund: str | None = None
    ) -> None:
        self.signature_failures += 1
        metrics.SIGNATURE_FAILURES.labels("atom").inc()
        about = {"tid": tid} if refund is None else {"tid": tid, "refund": refund}
        log.error(
            "atom.signature_failed",
            merch_txn_id=exc.merch_txn_id,
            failures=self.signature_failures,
            **about,
        )
        log.warning("Signature verification failed", orderId=exc.merch_txn_id)

    async def _post(self, path: str, enc: str) -> str:
        """POST a sealed request; the body of a 200, or the error its failure means."""
        try:
            async with self.session.post(
                f"{self.base_url}{path}",
                json={"merchId": self.creds.merch_id, "encData": enc},
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            # The connection was never made: the request cannot have been processed.
            raise ProviderUnavailable(f"atom connect failed: {exc}", maybe_processed=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"atom {type(exc).__name__}: {exc}", maybe_processed=True
            ) from exc
        if status >= 500:
            raise ProviderUnavailable(
                f"atom answered {status}", maybe_processed=True, code=f"PROVIDER_HTTP_{status}"
            )
        if status in (401, 403):
            raise ProviderRejected(
                f"atom refused our credentials or signature ({status}): {text[:200]}",
                code=f"PROVIDER_HTTP_{status}",
            )
        if status != 200:
            # Not a business answer, and no money moved. A person looks at it.
            raise ProviderRejected(
                f"atom refused the request ({status}): {text[:200]}", code=f"PROVIDER_HTTP_{status}"
            )
        return text

    def _read(
        self,
        text: str,
        opener: Callable[[AtomCredentials, str], T],
        tid: str,
        refund: str | None = None,
    ) -> T:
        """The verified answer in a 200's body, or the error an unusable answer means."""
        subject = tid if refund is None else f"refund {refund} of {tid}"
        try:
            body: Any = json.loads(text)
            enc = body["encData"]
            if not isinstance(enc, str):
                raise TypeError("encData is not a string")
            return opener(self.creds, enc)
        except AtomSignatureError as exc:
            self._signature_failed(exc, tid, refund)
            # Not trusted, but money may have moved: flagged, and inquired before any resend.
            raise ProviderRejected(
                f"atom answer failed signature verification for {subject}: not trusted",
                maybe_processed=True,
                code="BAD_SIGNATURE",
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            # AtomCryptoError and AtomProtocolError are ValueErrors. We sent the request, and
            # an answer we cannot read may still mean money moved.
            kind = "undecryptable" if isinstance(exc, AtomCryptoError) else "unreadable"
            raise ProviderUnavailable(f"atom answer {kind}: {exc}", maybe_processed=True) from exc

    async def _call(
        self, path: str, payment: Claimed, txn: str, hosted: dict[str, str] | None = None
    ) -> AtomAnswer:
        enc = seal_request(self.creds, payment.tid, payment.amount, payment.currency, txn, hosted)
        try:
            text = await self._post(path, enc)
        except ProviderUnavailable as exc:
            # The seed's log point; retryCount is how many tries came before this one.
            log.error(
                "API call failed",
                error=exc.reason,
                retryCount=payment.attempts - 1,
                orderId=payment.order_id,
                tid=payment.tid,
            )
            raise
        answer = self._read(text, open_answer, payment.tid)
        _about(
            (answer.merch_txn_id, answer.amount, answer.currency),
            (payment.tid, str(payment.amount), payment.currency),
            "",
        )
        return answer

    async def authorize(self, payment: Claimed) -> Outcome:
        """Ask Atom to charge by reference; a decline is a final answer. A checkout session's
        payment goes to Atom's payment page instead: the answer is a token (REQUIRES_ACTION)."""
        hosted = None
        if self.hosted_urls is not None and payment.checkout_session_id is not None:
            hosted = self.hosted_urls(payment)
        log.info(
            "Payment initiated",
            orderId=payment.order_id,
            amount=payment.amount,
            tid=payment.tid,
            hosted=hosted is not None,
        )
        answer = await self._call("/auth", payment, TXN_AUTH, hosted)
        return _answered(self._outcome(payment, answer), "a charge")

    async def inquire(self, payment: Claimed) -> Outcome | None:
        """Atom's record of this reference, or None if it has none (OTS0404). A token the
        customer has not acted on yet is REQUIRES_ACTION."""
        answer = await self._call("/status", payment, TXN_STATUS)
        return self._outcome(payment, answer)

    def _outcome(self, payment: Claimed, answer: AtomAnswer) -> Outcome | None:
        if answer.status_code != TOKEN_ISSUED:
            return _outcome(payment, answer)
        url = answer.action_url
        if not answer.atom_token_id or _origin(url) != _origin(self.base_url):
            # Signed, but not a page of the Atom we call: never send a customer there.
            raise ProviderRejected(
                f"atom token answer for {payment.tid} names no usable page: {url[:200]!r}",
                maybe_processed=True,
            )
        log.info("Token received", atomTokenId=answer.atom_token_id, tid=payment.tid)
        return Outcome(
            payment.id,
            Status.REQUIRES_ACTION,
            token=answer.atom_token_id,
            action_url=url,
        )

    async def _call_refund(self, path: str, refund: ClaimedRefund, txn: str) -> AtomRefundAnswer:
        enc = seal_refund_request(
            self.creds, refund.tid, refund.public_id, refund.amount, refund.currency, txn
        )
        text = await self._post(path, enc)
        answer = self._read(text, open_refund_answer, refund.tid, refund.public_id)
        _about(
            (answer.merch_txn_id, answer.refund_txn_id, answer.amount, answer.currency),
            (refund.tid, refund.public_id, str(refund.amount), refund.currency),
            "refund ",
        )
        return answer

    async def refund(self, refund: ClaimedRefund) -> RefundOutcome:
        """Ask Atom to return money by the refund's reference; a rejection is final."""
        answer = await self._call_refund("/refund", refund, TXN_REFUND)
        return _answered(_refund_outcome(refund, answer), "a refund")

    async def inquire_refund(self, refund: ClaimedRefund) -> RefundOutcome | None:
        """Atom's record of this refund reference, or None if it has none (OTS0404)."""
        answer = await self._call_refund("/refund-status", refund, TXN_REFUND_STATUS)
        return _refund_outcome(refund, answer)

    def verify_callback(self, enc_data_hex: str) -> AtomCallback:
        """verify_callback with this provider's credentials, counting signature failures."""
        try:
            return verify_callback(self.creds, enc_data_hex)
        except AtomSignatureError as exc:
            self._signature_failed(exc, exc.merch_txn_id)
            raise


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _about(theirs: tuple[str, ...], mine: tuple[str, ...], what: str) -> None:
    """Signed, but about another payment or refund: a mix-up at Atom or a replayed answer."""
    if theirs != mine:
        raise ProviderRejected(
            f"atom answered for {what}{' '.join(theirs)}, not {' '.join(mine)}",
            maybe_processed=True,
        )


def _answered(outcome: T | None, what: str) -> T:
    """The outcome of a charge or a refund: "no record" is no answer to one, and whether it
    happened is for the inquiry."""
    if outcome is None:
        raise ProviderUnavailable(
            f"atom answered {what} with no record (OTS0404)", maybe_processed=True
        )
    return outcome


def _outcome(payment: Claimed, answer: AtomAnswer) -> Outcome | None:
    if answer.status_code == APPROVED and answer.atom_txn_id:
        return Outcome(
            payment.id,
            Status.SUCCESS,
            approval_no=answer.atom_txn_id,
            payment_method=answer.payment_method,
        )
    if answer.status_code == DECLINED:
        return Outcome(
            payment.id,
            Status.FAILED,
            fail_reason=provider.reason_code(answer.description, "DECLINED"),
        )
    _no_record(answer.status_code, "answer")
    return None


def _refund_outcome(refund: ClaimedRefund, answer: AtomRefundAnswer) -> RefundOutcome | None:
    if answer.status_code == REFUNDED and answer.atom_refund_id:
        return RefundOutcome(refund.id, RefundStatus.REFUNDED, refund_no=answer.atom_refund_id)
    if answer.status_code == REJECTED:
        return RefundOutcome(
            refund.id,
            RefundStatus.REFUND_FAILED,
            fail_reason=provider.reason_code(answer.description, "REJECTED"),
        )
    _no_record(answer.status_code, "refund answer")
    return None


def _no_record(status_code: str, what: str) -> None:
    """Return for Atom's "no record" (nothing happened yet); any other code is not understood."""
    if status_code == NO_RECORD:
        return
    raise ProviderUnavailable(
        f"atom {what} not understood: statusCode {status_code!r}", maybe_processed=True
    )
