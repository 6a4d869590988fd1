"""Atom's messages: the sealed requests the engine sends, and the answers and callbacks it
believes only once their signature verifies (the crypto is in atom_crypto.py)."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from config import settings as config_settings
from config.settings import Settings
from engine.models import Status
from engine.providers import protocol as provider
from engine.providers.atom_crypto import (
    AtomCredentials,
    AtomProtocolError,
    AtomSignatureError,
    answer_signature,
    decrypt,
    derive_key,
    encrypt,
    refund_request_signature,
    request_signature,
    signatures_match,
)

APPROVED = "OTS0000"
DECLINED = "OTS0600"
NO_RECORD = "OTS0404"
_METHOD = re.compile(r"^[a-z][a-z_]{0,31}$")
# A hosted AUTH's answer, and a STATUS before the customer acted: token issued, nothing charged.
TOKEN_ISSUED = "OTS0100"
# The same codes in a refund answer: refunded, and rejected (description = the reason).
REFUNDED = APPROVED
REJECTED = DECLINED

# What each answer's signature covers after merchId, in order (atom_crypto.answer_signature).
# All are required strings but atomTokenId, which only a hosted AUTH's answer has.
_ANSWER_SIGNED = ("atomTxnId", "atomTokenId", "merchTxnId", "statusCode", "amount", "currency")
_REFUND_ANSWER_SIGNED = (
    "atomRefundId",
    "merchTxnId",
    "refundTxnId",
    "statusCode",
    "amount",
    "currency",
)
_OPTIONAL = frozenset({"atomTokenId"})


@dataclass(frozen=True, slots=True)
class AtomAnswer:
    """A decrypted response or callback whose signature verified."""

    merch_txn_id: str
    atom_txn_id: str
    status_code: str
    amount: str
    currency: str
    description: str | None
    # A hosted AUTH's token and Atom's page for it (TOKEN_ISSUED), else "".
    atom_token_id: str = ""
    action_url: str = ""
    # The way the customer paid (a callback's, informative), if named.
    payment_method: str | None = None


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
    # The way the customer paid on Atom's page, if the callback names it.
    payment_method: str | None = None


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


def seal_request(
    creds: AtomCredentials,
    tid: str,
    amount: int,
    currency: str,
    txn: str,
    hosted: dict[str, str] | None = None,
) -> str:
    """The encData of a signed AUTH or STATUS request for `tid`; `hosted` adds returnUrl and
    callbackUrl to an AUTH (Atom's payment page; not signed, see atom_crypto)."""
    body: dict[str, str] = {
        "merchId": creds.merch_id,
        "merchTxnId": tid,
        "amount": str(amount),
        "currency": currency,
        "txnType": txn,
        "signature": request_signature(creds, tid, amount, currency, txn),
    }
    body |= hosted or {}
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


def _verified(
    creds: AtomCredentials, enc_data: str, signed: tuple[str, ...], reference: str
) -> Any:
    """An answer's fields, once its signature over the `signed` ones matches; else raises."""
    required = (*(name for name in signed if name not in _OPTIONAL), "signature")
    data = _answer_fields(creds, enc_data, required)
    expected = answer_signature(creds, *(_text(data, name) for name in signed))
    if not signatures_match(expected, data["signature"]):
        raise AtomSignatureError(
            f"signature does not verify for {reference} {data[reference]!r}",
            merch_txn_id=data["merchTxnId"],
        )
    return data


def _common(data: Any) -> dict[str, Any]:
    """What every answer says, payment's or refund's: the members both answers' classes have."""
    description = data.get("description")
    return {
        "merch_txn_id": data["merchTxnId"],
        "status_code": data["statusCode"],
        "amount": data["amount"],
        "currency": data["currency"],
        "description": description if isinstance(description, str) else None,
    }


def open_answer(creds: AtomCredentials, enc_data: str) -> AtomAnswer:
    """Decrypt and verify a response or callback.

    Raises AtomCryptoError (undecryptable), AtomProtocolError (not an Atom answer) or
    AtomSignatureError (the signature does not match the fields).
    """
    data = _verified(creds, enc_data, _ANSWER_SIGNED, "merchTxnId")
    return AtomAnswer(
        **_common(data),
        atom_txn_id=data["atomTxnId"],
        atom_token_id=_text(data, "atomTokenId"),
        action_url=_text(data, "actionUrl"),
        payment_method=_method(_text(data, "paymentMethod")),
    )


def _method(raw: str) -> str | None:
    # Not signed, and shown to merchants: a short lower-case word (card, upi, netbanking) only.
    return raw if _METHOD.match(raw) else None


def _text(data: Any, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def open_refund_answer(creds: AtomCredentials, enc_data: str) -> AtomRefundAnswer:
    """Decrypt and verify a refund or refund-status answer; raises as open_answer does."""
    data = _verified(creds, enc_data, _REFUND_ANSWER_SIGNED, "refundTxnId")
    return AtomRefundAnswer(
        **_common(data),
        refund_txn_id=data["refundTxnId"],
        atom_refund_id=data["atomRefundId"],
    )


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
        payment_method=answer.payment_method,
    )
