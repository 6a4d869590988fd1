"""The Atom protocol's cryptography: key derivation, payload encryption and signatures.

The protocol, as this engine and the simulator (simulator/atom_wire.py, written separately)
speak it:

Credentials. Each merchant-of-record at Atom has six strings: `merch_id`, `password`,
`req_hash_key`, `res_hash_key`, `req_enc_key`, `res_enc_key`. Requests are encrypted with
req_enc_key and signed with req_hash_key; responses and callbacks with the res_* keys.

Encryption. key = PBKDF2-HMAC-SHA512(password = enc_key as UTF-8, salt = the same bytes,
iterations = 65536, length = 32 bytes). AES-256-CBC with PKCS#7 padding and the fixed IV
00 01 02 .. 0F (Atom's choice: the same plaintext always gives the same ciphertext). The
ciphertext travels as uppercase hex; either case is accepted on the way in. CBC gives no
integrity: a changed ciphertext usually fails to unpad or to parse, but can decrypt to other
bytes, so a message is trusted only once the signature inside it verifies.

Request signature. Lowercase hex of HMAC-SHA512(req_hash_key, merch_id + password +
merch_txn_id + amount + currency + txn_type), where amount is the decimal string of minor units
("1000") and txn_type is "AUTH" or "STATUS". The fields are concatenated without separators,
as Atom does; merch_txn_id is our tid (fixed shape) and amount is digits only, so no two
different requests concatenate to the same string.

Response signature. Lowercase hex of HMAC-SHA512(res_hash_key, merch_id + atom_txn_id +
merch_txn_id + status_code + amount + currency); atom_txn_id is "" when there is none (OTS0404).
It does not cover "description" (a decline reason), which is only as trustworthy as the
encryption around it.

Wire. POST {atom_url}/auth or {atom_url}/status, a JSON (or form) body
{"merchId": merch_id, "encData": hex(AES(req_enc_key, JSON request))} where the JSON request is
{"merchId", "merchTxnId", "amount", "currency", "txnType", "signature"}. The answer is JSON
{"encData": hex(AES(res_enc_key, JSON response))}, the response being {"merchTxnId",
"atomTxnId", "statusCode", "amount", "currency", "signature"} plus "description" on a decline.
statusCode: "OTS0000" approved, "OTS0600" declined (description = the reason), "OTS0404" no
record (status inquiries only). A callback is the same encData as a response, sent by Atom.
HTTP 401 {"error": "bad_signature"} answers a request whose signature does not verify.

Hosted payment page (seed 001's flow). An AUTH request may also carry "returnUrl" (where Atom
sends the customer's browser back) and "callbackUrl" (where Atom POSTs the outcome); they are
inside the encryption but not in the signature, so the known-answer vectors stay. Atom then
charges nothing yet: it answers statusCode "OTS0100" (token issued) with "atomTokenId" and
"actionUrl" (its payment page for that token) and "atomTxnId" "". That answer's signature
covers the token: its atom_txn_id part is atomTxnId + atomTokenId ("" + the token), so an
answer without a token signs exactly as before. A STATUS inquiry on a token the customer has
not acted on answers the same OTS0100 answer; once they approve or decline, the final one.
The callback may name "paymentMethod" (card, upi, netbanking: informative, not signed).

Refunds. POST {atom_url}/refund (txn_type "REFUND") returns money of a charged merchTxnId;
POST {atom_url}/refund-status (txn_type "REFUND_STATUS") asks what became of a refund. Same
envelope and encryption; the JSON request is {"merchId", "merchTxnId", "refundTxnId", "amount",
"currency", "txnType", "signature"}: merchTxnId is the payment's tid, refundTxnId our refund's
public id (Atom's idempotency reference for refunds: a repeat gets the stored answer, and the
same refundTxnId with another merchTxnId or amount is HTTP 409 {"error": "reference_conflict"}),
amount the refund's minor units. Its signature is the lowercase hex of HMAC-SHA512(req_hash_key,
merch_id + password + merch_txn_id + refund_txn_id + amount + currency + txn_type). The tid
(`<A-Z0-9 prefix>_<YYYYMMDD>_<8 digits>`) and the refund id ("RF" + 11 Base62 characters) have
fixed shapes and amount is digits only, so here too no two requests concatenate alike.
The answer's encData holds {"merchTxnId", "refundTxnId", "atomRefundId", "statusCode", "amount",
"currency", "signature"} plus "description" on a rejection, signed as the lowercase hex of
HMAC-SHA512(res_hash_key, merch_id + atom_refund_id + merch_txn_id + refund_txn_id +
status_code + amount + currency). statusCode: "OTS0000" refunded (atomRefundId = Atom's refund
id), "OTS0600" rejected (description "NOT_CAPTURED": the merchTxnId was never charged;
"EXCEEDS_CAPTURED": refunds so far plus this one would pass the charge), "OTS0404" no record
(refund-status only). atomRefundId is "" unless money was returned. As for payments, the
signature does not cover "description".
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PBKDF2_ITERATIONS = 65536
KEY_BYTES = 32
IV = bytes(range(16))
BLOCK_BYTES = 16

TXN_AUTH = "AUTH"
TXN_STATUS = "STATUS"
TXN_REFUND = "REFUND"
TXN_REFUND_STATUS = "REFUND_STATUS"

_HEX = re.compile(r"[0-9A-Fa-f]+")


class AtomProtocolError(ValueError):
    """An Atom message we cannot read or cannot trust."""


class AtomCryptoError(AtomProtocolError):
    """encData that is not hex, not whole AES blocks, or not correctly padded."""


class AtomSignatureError(AtomProtocolError):
    """A message whose signature does not match its fields: forged or corrupted."""

    def __init__(self, message: str, *, merch_txn_id: str | None = None) -> None:
        super().__init__(message)
        self.merch_txn_id = merch_txn_id


@dataclass(frozen=True, slots=True)
class AtomCredentials:
    """One merchant-of-record's credentials at Atom; secrets are kept out of repr."""

    merch_id: str
    password: str = field(repr=False)
    req_hash_key: str = field(repr=False)
    res_hash_key: str = field(repr=False)
    req_enc_key: str = field(repr=False)
    res_enc_key: str = field(repr=False)


# 65536 rounds of SHA-512 take tens of milliseconds; a handful of keys are derived once each.
@lru_cache(maxsize=32)
def derive_key(enc_key: str) -> bytes:
    """The AES-256 key for an Atom encryption key (PBKDF2-HMAC-SHA512, self-salted)."""
    secret = enc_key.encode()
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA512(), length=KEY_BYTES, salt=secret, iterations=PBKDF2_ITERATIONS
    )
    return kdf.derive(secret)


def encrypt(key: bytes, plaintext: bytes) -> str:
    """AES-256-CBC (fixed IV, PKCS#7) of `plaintext` under a derived key, as uppercase hex."""
    padder = padding.PKCS7(BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(IV)).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex().upper()


def decrypt(key: bytes, enc_hex: str) -> bytes:
    """The plaintext of hex encData under a derived key; AtomCryptoError if it cannot be."""
    # bytes.fromhex would also accept spaces; encData is hex digits only.
    if not _HEX.fullmatch(enc_hex) or len(enc_hex) % (2 * BLOCK_BYTES):
        raise AtomCryptoError(f"encData is not whole AES blocks of hex ({len(enc_hex)} characters)")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(IV)).decryptor()
    padded = decryptor.update(bytes.fromhex(enc_hex)) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        # The usual sign of a wrong key or a changed ciphertext.
        raise AtomCryptoError("encData does not decrypt (bad padding)") from None


def _hmac_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha512).hexdigest()


def request_signature(
    creds: AtomCredentials, merch_txn_id: str, amount: int, currency: str, txn_type: str
) -> str:
    """The signature of a request (lowercase hex)."""
    message = f"{creds.merch_id}{creds.password}{merch_txn_id}{amount}{currency}{txn_type}"
    return _hmac_hex(creds.req_hash_key, message)


def response_signature(
    creds: AtomCredentials,
    atom_txn_id: str,
    merch_txn_id: str,
    status_code: str,
    amount: str,
    currency: str,
) -> str:
    """The signature of a response or callback (lowercase hex)."""
    return answer_signature(creds, atom_txn_id, merch_txn_id, status_code, amount, currency)


def refund_request_signature(
    creds: AtomCredentials,
    merch_txn_id: str,
    refund_txn_id: str,
    amount: int,
    currency: str,
    txn_type: str,
) -> str:
    """The signature of a REFUND or REFUND_STATUS request (lowercase hex)."""
    message = (
        f"{creds.merch_id}{creds.password}{merch_txn_id}{refund_txn_id}{amount}{currency}{txn_type}"
    )
    return _hmac_hex(creds.req_hash_key, message)


def refund_response_signature(
    creds: AtomCredentials,
    atom_refund_id: str,
    merch_txn_id: str,
    refund_txn_id: str,
    status_code: str,
    amount: str,
    currency: str,
) -> str:
    """The signature of a refund or refund-status answer (lowercase hex)."""
    return answer_signature(
        creds, atom_refund_id, merch_txn_id, refund_txn_id, status_code, amount, currency
    )


def answer_signature(creds: AtomCredentials, *fields: str) -> str:
    """The signature of any answer: merchId, then the answer's signed `fields` in their order."""
    return _hmac_hex(creds.res_hash_key, creds.merch_id + "".join(fields))


def signatures_match(expected: str, received: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about where they differ."""
    return hmac.compare_digest(expected.encode(), received.encode())
