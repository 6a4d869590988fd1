"""The Atom provider: encrypted, signed authorize, status and refund calls, and callbacks.

The protocol is defined in engine/providers/atom_crypto.py. The tid is the merchTxnId, Atom's
idempotency reference for a charge; a refund's public id is the refundTxnId, its reference for a
refund. An
answer is believed only after its signature verifies: one that does not is
counted, logged as `atom.signature_failed` and raised as ProviderRejected, so the payment waits
for a person and a forged or corrupted answer can never settle it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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
    AtomProtocolError,
    AtomSignatureError,
    decrypt,
    derive_key,
    encrypt,
    refund_request_signature,
    refund_response_signature,
    request_signature,
    response_signature,
    signatures_match,
)
from engine.providers.protocol import ProviderRejected, ProviderUnavailable

log = structlog.get_logger()

APPROVED = "OTS0000"
DECLINED = "OTS0600"
NO_RECORD = "OTS0404"
# The same codes in a refund answer: refunded, and rejected (description = the reason).
REFUNDED = APPROVED
REJECTED = DECLINED

_ANSWER_FIELDS = ("merchTxnId", "atomTxnId", "statusCode", "amount", "currency", "signature")
_REFUND_ANSWER_FIELDS = (
    "merchTxnId",
    "refundTxnId",
    "atomRefundId",
    "statusCode",
    "amount",
    "currency",
    "signature",
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AtomAnswer:
    """A decrypted response or callback whose signature verified."""

    merch_txn_id: str
    atom_txn_id: str
    status_code: str
    amount: str
    currency: str
    description: str | None


@dataclass(frozen=True, slots=True)
class AtomRefundAnswer:
    """A decrypted refund or refund-status answer whose signature verified."""

    merch_txn_id: str
    refund_txn_id: str
    # "" unless money was returned.
    atom_refund_id: str
    status_code: str
    amount: str
    currency: str
    description: str | None


@dataclass(frozen=True, slots=True)
class AtomCallback:
    """What a verified callback says about one payment (the tid is merch_txn_id)."""

    merch_txn_id: str
    status: Status
    # Atom's transaction id: the approval number of a SUCCESS.
    atom_txn_id: str
    # The decline reason of a FAILED, else None.
    reason: str | None
    amount: int
    currency: str


def credentials(settings: Settings, mode: str = "live") -> AtomCredentials:
    """The engine's Atom credentials of `mode` from its settings."""
    value = functools.partial(config_settings.atom_value, settings, mode)
    return AtomCredentials(
        merch_id=value("merch_id"),
        password=value("password"),
        req_hash_key=value("req_hash_key"),
        res_hash_key=value("res_hash_key"),
        req_enc_key=value("req_enc_key"),
        res_enc_key=value("res_enc_key"),
    )


def seal_request(creds: AtomCredentials, tid: str, amount: int, currency: str, txn: str) -> str:
    """The encData of a signed AUTH or STATUS request for `tid`."""
    body = {
        "merchId": creds.merch_id,
        "merchTxnId": tid,
        "amount": str(amount),
        "currency": currency,
        "txnType": txn,
        "signature": request_signature(creds, tid, amount, currency, txn),
    }
    text = json.dumps(body, separators=(",", ":"))
    return encrypt(derive_key(creds.req_enc_key), text.encode())


def seal_refund_request(
    creds: AtomCredentials, tid: str, refund_txn_id: str, amount: int, currency: str, txn: str
) -> str:
    """The encData of a signed REFUND or REFUND_STATUS request for refund `refund_txn_id`."""
    body = {
        "merchId": creds.merch_id,
        "merchTxnId": tid,
        "refundTxnId": refund_txn_id,
        "amount": str(amount),
        "currency": currency,
        "txnType": txn,
        "signature": refund_request_signature(creds, tid, refund_txn_id, amount, currency, txn),
    }
    text = json.dumps(body, separators=(",", ":"))
    return encrypt(derive_key(creds.req_enc_key), text.encode())


def _answer_fields(creds: AtomCredentials, enc_data: str, fields: tuple[str, ...]) -> Any:
    """The decrypted JSON object of an answer, checked to have `fields` as strings."""
    plaintext = decrypt(derive_key(creds.res_enc_key), enc_data)
    try:
        data = json.loads(plaintext)
    except ValueError:  # also UnicodeDecodeError: decrypted garbage
        raise AtomProtocolError("decrypted encData is not JSON") from None
    if not isinstance(data, dict):
        raise AtomProtocolError("decrypted encData is not a JSON object")
    missing = [k for k in fields if not isinstance(data.get(k), str)]
    if missing:
        raise AtomProtocolError(f"answer lacks string fields {missing}")
    return data


def open_answer(creds: AtomCredentials, enc_data: str) -> AtomAnswer:
    """Decrypt and verify a response or callback.

    Raises AtomCryptoError (undecryptable), AtomProtocolError (not an Atom answer) or
    AtomSignatureError (the signature does not match the fields).
    """
    data = _answer_fields(creds, enc_data, _ANSWER_FIELDS)
    description = data.get("description")
    answer = AtomAnswer(
        merch_txn_id=data["merchTxnId"],
        atom_txn_id=data["atomTxnId"],
        status_code=data["statusCode"],
        amount=data["amount"],
        currency=data["currency"],
        description=description if isinstance(description, str) else None,
    )
    expected = response_signature(
        creds,
        answer.atom_txn_id,
        answer.merch_txn_id,
        answer.status_code,
        answer.amount,
        answer.currency,
    )
    if not signatures_match(expected, data["signature"]):
        raise AtomSignatureError(
            f"signature does not verify for merchTxnId {answer.merch_txn_id!r}",
            merch_txn_id=answer.merch_txn_id,
        )
    return answer


def open_refund_answer(creds: AtomCredentials, enc_data: str) -> AtomRefundAnswer:
    """Decrypt and verify a refund or refund-status answer; raises as open_answer does."""
    data = _answer_fields(creds, enc_data, _REFUND_ANSWER_FIELDS)
    description = data.get("description")
    answer = AtomRefundAnswer(
        merch_txn_id=data["merchTxnId"],
        refund_txn_id=data["refundTxnId"],
        atom_refund_id=data["atomRefundId"],
        status_code=data["statusCode"],
        amount=data["amount"],
        currency=data["currency"],
        description=description if isinstance(description, str) else None,
    )
    expected = refund_response_signature(
        creds,
        answer.atom_refund_id,
        answer.merch_txn_id,
        answer.refund_txn_id,
        answer.status_code,
        answer.amount,
        answer.currency,
    )
    if not signatures_match(expected, data["signature"]):
        raise AtomSignatureError(
            f"signature does not verify for refundTxnId {answer.refund_txn_id!r}",
            merch_txn_id=answer.merch_txn_id,
        )
    return answer


def verify_callback(creds: AtomCredentials, enc_data_hex: str) -> AtomCallback:
    """Decrypt a callback's encData with res_enc_key and verify its signature.

    For the callback route: raises AtomSignatureError when the signature does not match (never
    act on such a callback), AtomCryptoError when it does not decrypt, and AtomProtocolError
    when it is not a final answer. Use AtomProvider.verify_callback to have failures counted.
    """
    answer = open_answer(creds, enc_data_hex)
    if not answer.amount.isdigit():
        raise AtomProtocolError(f"callback amount is not minor units: {answer.amount!r}")
    if answer.status_code == APPROVED and answer.atom_txn_id:
        status, reason = Status.SUCCESS, None
    elif answer.status_code == DECLINED:
        status, reason = Status.FAILED, provider.reason_code(answer.description, "DECLINED")
    else:
        raise AtomProtocolError(f"callback is not a final answer: {answer.status_code!r}")
    return AtomCallback(
        merch_txn_id=answer.merch_txn_id,
        status=status,
        atom_txn_id=answer.atom_txn_id,
        reason=reason,
        amount=int(answer.amount),
        currency=answer.currency,
    )


class AtomProvider:
    """Charges, refunds and inquires at Atom over HTTP; counts answers failing their signature."""

    name = "atom"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        creds: AtomCredentials,
        timeout_seconds: float,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.creds = creds
        self.timeout_seconds = timeout_seconds
        # Answers and callbacks refused for their signature, since this provider was built.
        self.signature_failures = 0
        # Derive both keys now rather than on the first payment's call.
        derive_key(creds.req_enc_key)
        derive_key(creds.res_enc_key)

    @classmethod
    def from_settings(
        cls, session: aiohttp.ClientSession, settings: Settings, mode: str = "live"
    ) -> AtomProvider:
        """The provider the worker registers for `mode`, from ENGINE_[TEST_]ATOM_* settings."""
        return cls(
            session,
            config_settings.atom_url(settings, mode),
            credentials(settings, mode),
            settings.atom_timeout_seconds,
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

    async def _call(self, path: str, payment: Claimed, txn: str) -> AtomAnswer:
        enc = seal_request(self.creds, payment.tid, payment.amount, payment.currency, txn)
        answer = self._read(await self._post(path, enc), open_answer, payment.tid)
        # Signed, but about another payment: a mix-up at Atom or a replayed answer.
        mine = (payment.tid, str(payment.amount), payment.currency)
        if (answer.merch_txn_id, answer.amount, answer.currency) != mine:
            raise ProviderRejected(
                f"atom answered for {answer.merch_txn_id} {answer.amount} {answer.currency}, "
                f"not {payment.tid} {payment.amount} {payment.currency}",
                maybe_processed=True,
            )
        return answer

    async def authorize(self, payment: Claimed) -> Outcome:
        """Ask Atom to charge by reference; a decline is a final answer."""
        answer = await self._call("/auth", payment, TXN_AUTH)
        outcome = _outcome(payment, answer)
        if outcome is None:
            # "No record" is no answer to a charge; whether it happened is for the inquiry.
            raise ProviderUnavailable(
                "atom answered a charge with no record (OTS0404)", maybe_processed=True
            )
        return outcome

    async def inquire(self, payment: Claimed) -> Outcome | None:
        """Atom's record of this reference, or None if it has none (OTS0404)."""
        answer = await self._call("/status", payment, TXN_STATUS)
        return _outcome(payment, answer)

    async def _call_refund(self, path: str, refund: ClaimedRefund, txn: str) -> AtomRefundAnswer:
        enc = seal_refund_request(
            self.creds, refund.tid, refund.public_id, refund.amount, refund.currency, txn
        )
        text = await self._post(path, enc)
        answer = self._read(text, open_refund_answer, refund.tid, refund.public_id)
        # Signed, but about another refund: a mix-up at Atom or a replayed answer.
        mine = (refund.tid, refund.public_id, str(refund.amount), refund.currency)
        theirs = (answer.merch_txn_id, answer.refund_txn_id, answer.amount, answer.currency)
        if theirs != mine:
            raise ProviderRejected(
                f"atom answered for refund {' '.join(theirs)}, not {' '.join(mine)}",
                maybe_processed=True,
            )
        return answer

    async def refund(self, refund: ClaimedRefund) -> RefundOutcome:
        """Ask Atom to return money by the refund's reference; a rejection is final."""
        answer = await self._call_refund("/refund", refund, TXN_REFUND)
        outcome = _refund_outcome(refund, answer)
        if outcome is None:
            # As for a charge: whether the refund happened is for the refund-status inquiry.
            raise ProviderUnavailable(
                "atom answered a refund with no record (OTS0404)", maybe_processed=True
            )
        return outcome

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


def _outcome(payment: Claimed, answer: AtomAnswer) -> Outcome | None:
    if answer.status_code == APPROVED and answer.atom_txn_id:
        return Outcome(payment.id, Status.SUCCESS, approval_no=answer.atom_txn_id)
    if answer.status_code == DECLINED:
        return Outcome(
            payment.id,
            Status.FAILED,
            fail_reason=provider.reason_code(answer.description, "DECLINED"),
        )
    if answer.status_code == NO_RECORD:
        return None
    raise ProviderUnavailable(
        f"atom answer not understood: statusCode {answer.status_code!r}", maybe_processed=True
    )


def _refund_outcome(refund: ClaimedRefund, answer: AtomRefundAnswer) -> RefundOutcome | None:
    if answer.status_code == REFUNDED and answer.atom_refund_id:
        return RefundOutcome(refund.id, RefundStatus.REFUNDED, refund_no=answer.atom_refund_id)
    if answer.status_code == REJECTED:
        return RefundOutcome(
            refund.id,
            RefundStatus.REFUND_FAILED,
            fail_reason=provider.reason_code(answer.description, "REJECTED"),
        )
    if answer.status_code == NO_RECORD:
        return None
    raise ProviderUnavailable(
        f"atom refund answer not understood: statusCode {answer.status_code!r}",
        maybe_processed=True,
    )
