"""Atom's wire format as the simulator speaks it: AES-CBC sealed JSON, HMAC signatures, and the
requests it accepts. Written apart from engine/providers/atom_crypto.py (stdlib PBKDF2 and
hand-written padding), so that a mistake on one side shows up as a mismatch."""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import BaseModel, ConfigDict, Field

from simulator.settings import SimulatorSettings

Json = dict[str, Any]
TxnType = Literal["AUTH", "STATUS"]
RefundTxnType = Literal["REFUND", "REFUND_STATUS"]

APPROVED = "OTS0000"
DECLINED = "OTS0600"
NO_RECORD = "OTS0404"
# A hosted AUTH's answer (and STATUS until the customer acts): token issued, nothing charged.
TOKEN_ISSUED = "OTS0100"

# Atom's fixed IV: the bytes 0, 1, ..., 15.
ATOM_IV = bytes(range(16))
HEX = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class MerchantKeys:
    """The one merchant the simulated Atom knows, with its six credentials."""

    merch_id: str
    password: str = field(repr=False)
    req_hash_key: str = field(repr=False)
    res_hash_key: str = field(repr=False)
    req_enc_key: str = field(repr=False)
    res_enc_key: str = field(repr=False)

    @classmethod
    def from_settings(cls, settings: SimulatorSettings) -> "MerchantKeys":
        """The SIM_ATOM_* credentials."""
        return cls(
            settings.atom_merch_id,
            settings.atom_password,
            settings.atom_req_hash_key,
            settings.atom_res_hash_key,
            settings.atom_req_enc_key,
            settings.atom_res_enc_key,
        )


@lru_cache(maxsize=32)
def aes_key(enc_key: str) -> bytes:
    """PBKDF2-HMAC-SHA512 of the key string, salted with itself: 65536 rounds, 32 bytes."""
    secret = enc_key.encode("utf-8")
    return hashlib.pbkdf2_hmac("sha512", secret, secret, 65536, dklen=32)


def seal(enc_key: str, message: Json) -> str:
    """encData for `message`: JSON, PKCS#7, AES-256-CBC with the fixed IV, uppercase hex."""
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    pad = 16 - len(data) % 16
    encryptor = Cipher(algorithms.AES(aes_key(enc_key)), modes.CBC(ATOM_IV)).encryptor()
    return (encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()).hex().upper()


def unseal(enc_key: str, enc_data: str) -> Any:
    """The JSON inside encData; ValueError if it is not hex, not padded or not JSON."""
    if not enc_data or len(enc_data) % 32 or not HEX.fullmatch(enc_data):
        raise ValueError("encData is not hex AES blocks")
    decryptor = Cipher(algorithms.AES(aes_key(enc_key)), modes.CBC(ATOM_IV)).decryptor()
    padded = decryptor.update(bytes.fromhex(enc_data)) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise ValueError("encData has bad padding")
    return json.loads(padded[:-pad].decode("utf-8"))


def sign(key: str, *parts: str) -> str:
    """HMAC-SHA512 over the parts concatenated, lowercase hex."""
    return hmac.new(key.encode("utf-8"), "".join(parts).encode("utf-8"), "sha512").hexdigest()


class SignedRequest(BaseModel):
    """What every decrypted request carries; its signature covers the ids, money and type."""

    model_config = ConfigDict(strict=True, extra="ignore")

    merch_id: str = Field(alias="merchId")
    merch_txn_id: str = Field(alias="merchTxnId", min_length=1, max_length=64)
    # Minor units as a decimal string, as it is signed.
    amount: str = Field(pattern=r"^[1-9][0-9]{0,17}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    txn_type: str = Field(alias="txnType")
    signature: str

    def ids(self) -> tuple[str, ...]:
        """The transaction ids the signature covers, in order."""
        return (self.merch_txn_id,)

    def signed_parts(self, k: MerchantKeys) -> tuple[str, ...]:
        """What its signature covers, in order."""
        return (k.merch_id, k.password, *self.ids(), self.amount, self.currency, self.txn_type)


class AtomRequest(SignedRequest):
    """A decrypted AUTH or STATUS request. An AUTH naming returnUrl and callbackUrl is for
    the hosted payment page: it is answered with a token, and nothing is charged yet."""

    txn_type: TxnType = Field(alias="txnType")
    return_url: str | None = Field(
        default=None, alias="returnUrl", max_length=2000, pattern=r"^https?://"
    )
    callback_url: str | None = Field(
        default=None, alias="callbackUrl", max_length=2000, pattern=r"^https?://"
    )


class AtomRefundRequest(SignedRequest):
    """A decrypted REFUND or REFUND_STATUS request."""

    refund_txn_id: str = Field(alias="refundTxnId", min_length=1, max_length=64)
    txn_type: RefundTxnType = Field(alias="txnType")

    def ids(self) -> tuple[str, ...]:
        return (self.merch_txn_id, self.refund_txn_id)


RequestT = TypeVar("RequestT", AtomRequest, AtomRefundRequest)


def answer_signature(k: MerchantKeys, answer: Json) -> str:
    """The true signature of a payment or refund answer (a refund's names a refundTxnId)."""
    if "refundTxnId" in answer:
        return sign(
            k.res_hash_key,
            k.merch_id,
            answer["atomRefundId"],
            answer["merchTxnId"],
            answer["refundTxnId"],
            answer["statusCode"],
            answer["amount"],
            answer["currency"],
        )
    return sign(
        k.res_hash_key,
        k.merch_id,
        # A token answer's signature covers the token (atomTxnId is "" there).
        answer["atomTxnId"] + answer.get("atomTokenId", ""),
        answer["merchTxnId"],
        answer["statusCode"],
        answer["amount"],
        answer["currency"],
    )
