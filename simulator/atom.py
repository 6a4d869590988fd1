"""Fake Atom gateway: encrypted, signed AUTH, STATUS and refund calls, idempotent ledgers, faults.

Speaks the protocol described in engine/providers/atom_crypto.py, implemented here on its own
(stdlib PBKDF2 and hand-written padding) so that a mistake on one side shows up as a mismatch
instead of
being shared. The merchTxnId is the idempotency reference: it is decided once, by the card
acquirer's seeded rule, and every later AUTH or STATUS gets the stored answer.

Refunds follow the card acquirer's rules (simulator/refunds.py) against this ledger: REFUNDED
if the merchTxnId was charged and its refunds so far plus this one stay within the charge, else
rejected (OTS0600) with NOT_CAPTURED or EXCEEDS_CAPTURED. The refundTxnId is decided once and
every later REFUND or REFUND_STATUS gets the stored answer. The same faults apply.
"""

import hashlib
import hmac
import json
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.acquirer import DECLINE_REASONS, PROCESS_SEED
from simulator.settings import SimulatorSettings
from simulator.validation import bad_request, read_model

Json = dict[str, Any]
TxnType = Literal["AUTH", "STATUS"]
RefundTxnType = Literal["REFUND", "REFUND_STATUS"]

APPROVED = "OTS0000"
DECLINED = "OTS0600"
NO_RECORD = "OTS0404"

# Atom's fixed IV: the bytes 0, 1, ..., 15.
ATOM_IV = bytes(range(16))
HEX = re.compile(r"[0-9A-Fa-f]+")

log = structlog.get_logger("simulator.atom")


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


class AtomRequest(BaseModel):
    """A decrypted AUTH or STATUS request."""

    model_config = ConfigDict(strict=True, extra="ignore")

    merch_id: str = Field(alias="merchId")
    merch_txn_id: str = Field(alias="merchTxnId", min_length=1, max_length=64)
    # Minor units as a decimal string, as it is signed.
    amount: str = Field(pattern=r"^[1-9][0-9]{0,17}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    txn_type: TxnType = Field(alias="txnType")
    signature: str

    def signed_parts(self, k: MerchantKeys) -> tuple[str, ...]:
        """What its signature covers, in order."""
        return (
            k.merch_id,
            k.password,
            self.merch_txn_id,
            self.amount,
            self.currency,
            self.txn_type,
        )


class AtomRefundRequest(BaseModel):
    """A decrypted REFUND or REFUND_STATUS request."""

    model_config = ConfigDict(strict=True, extra="ignore")

    merch_id: str = Field(alias="merchId")
    merch_txn_id: str = Field(alias="merchTxnId", min_length=1, max_length=64)
    refund_txn_id: str = Field(alias="refundTxnId", min_length=1, max_length=64)
    amount: str = Field(pattern=r"^[1-9][0-9]{0,17}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    txn_type: RefundTxnType = Field(alias="txnType")
    signature: str

    def signed_parts(self, k: MerchantKeys) -> tuple[str, ...]:
        """What its signature covers, in order."""
        return (
            k.merch_id,
            k.password,
            self.merch_txn_id,
            self.refund_txn_id,
            self.amount,
            self.currency,
            self.txn_type,
        )


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
        answer["atomTxnId"],
        answer["merchTxnId"],
        answer["statusCode"],
        answer["amount"],
        answer["currency"],
    )


class AtomConfig(BaseModel):
    """Body of POST /atom/admin/config; omitted fields stay unchanged."""

    model_config = ConfigDict(strict=True, extra="forbid")

    success_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: str | None = None
    # Probability that an answer (or callback) carries a corrupted signature.
    tamper_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    # Probability that a request is answered 503 before anything is decided or charged.
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    # Probability that an AUTH (or REFUND) is decided and recorded, then answered 503: the
    # answer is lost.
    lost_answer_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    # Restarts the fault random stream (empty: unpredictable).
    fault_seed: str | None = None


@dataclass
class AtomState:
    """Per-app Atom state: keys, knobs, stored answers, ledgers and counters."""

    keys: MerchantKeys
    success_rate: float
    seed: str
    tamper_rate: float = 0.0
    error_rate: float = 0.0
    lost_answer_rate: float = 0.0
    fault_seed: str = ""
    rng: random.Random = field(default_factory=random.Random)
    answers: dict[str, Json] = field(default_factory=dict)
    charges: list[Json] = field(default_factory=list)
    # Refund answers by refundTxnId, and the refunds that returned money.
    refund_answers: dict[str, Json] = field(default_factory=dict)
    refunds: list[Json] = field(default_factory=list)
    auth_calls: int = 0
    status_calls: int = 0
    approved: int = 0
    declined: int = 0
    refund_calls: int = 0
    refund_status_calls: int = 0
    refunded: int = 0
    refunds_rejected: int = 0
    bad_signatures: int = 0
    tampered: int = 0
    errors: int = 0
    lost_answers: int = 0

    def config(self) -> Json:
        """The run-time knobs as JSON."""
        names = (
            "success_rate",
            "seed",
            "tamper_rate",
            "error_rate",
            "lost_answer_rate",
            "fault_seed",
        )
        return {name: getattr(self, name) for name in names}

    def update(self, update: AtomConfig) -> None:
        """Apply the fields given in an admin config update."""
        for name, value in update.model_dump(exclude_none=True).items():
            setattr(self, name, value)
        if update.fault_seed is not None:
            self.rng = random.Random(update.fault_seed or None)

    def reset(self) -> None:
        """Forget answers, charges, refunds and counters; knobs stay."""
        self.answers.clear()
        self.charges.clear()
        self.refund_answers.clear()
        self.refunds.clear()
        self.auth_calls = self.status_calls = self.approved = self.declined = 0
        self.refund_calls = self.refund_status_calls = self.refunded = self.refunds_rejected = 0
        self.bad_signatures = self.tampered = self.errors = self.lost_answers = 0

    def roll(self, rate: float) -> bool:
        """One fault draw; a rate of 1.0 always fires and 0.0 never does."""
        return self.rng.random() < rate

    def decide(self, req: AtomRequest) -> Json:
        """Decide a new merchTxnId with the acquirer's seeded rule; record it (and the charge)."""
        digest = hashlib.sha256(f"{self.seed or PROCESS_SEED}:{req.merch_txn_id}".encode()).digest()
        roll = int.from_bytes(digest[:8], "big") / 2**64
        now = time.time()
        answer: Json = {
            "merchTxnId": req.merch_txn_id,
            "atomTxnId": f"{int(now * 1000)}{len(self.answers) % 1000:03d}",
            "amount": req.amount,
            "currency": req.currency,
        }
        if roll < self.success_rate or self.success_rate >= 1.0:
            answer["statusCode"] = APPROVED
            self.charges.append(
                {
                    "merchTxnId": req.merch_txn_id,
                    "atomTxnId": answer["atomTxnId"],
                    "amount": int(req.amount),
                    "currency": req.currency,
                    "chargedAt": datetime.fromtimestamp(now, UTC).isoformat(),
                }
            )
            self.approved += 1
        else:
            reason = DECLINE_REASONS[int.from_bytes(digest[8:16], "big") % len(DECLINE_REASONS)]
            answer |= {"statusCode": DECLINED, "description": reason}
            self.declined += 1
        self.answers[req.merch_txn_id] = answer
        return answer

    def decide_refund(self, req: AtomRefundRequest) -> Json:
        """Decide a new refundTxnId by the card acquirer's refund rules; record it."""
        charge = next((c for c in self.charges if c["merchTxnId"] == req.merch_txn_id), None)
        refunded = sum(r["amount"] for r in self.refunds if r["merchTxnId"] == req.merch_txn_id)
        now = time.time()
        answer: Json = {
            "merchTxnId": req.merch_txn_id,
            "refundTxnId": req.refund_txn_id,
            "atomRefundId": "",
            "amount": req.amount,
            "currency": req.currency,
        }
        if charge is None or refunded + int(req.amount) > charge["amount"]:
            reason = "NOT_CAPTURED" if charge is None else "EXCEEDS_CAPTURED"
            answer |= {"statusCode": DECLINED, "description": reason}
            self.refunds_rejected += 1
        else:
            atom_refund_id = f"{int(now * 1000)}{len(self.refunds) % 1000:03d}"
            answer |= {"statusCode": APPROVED, "atomRefundId": atom_refund_id}
            self.refunds.append(
                {
                    "merchTxnId": req.merch_txn_id,
                    "refundTxnId": req.refund_txn_id,
                    "atomRefundId": answer["atomRefundId"],
                    "amount": int(req.amount),
                    "currency": req.currency,
                    "refundedAt": datetime.fromtimestamp(now, UTC).isoformat(),
                }
            )
            self.refunded += 1
        self.refund_answers[req.refund_txn_id] = answer
        return answer

    def sealed(self, answer: Json) -> Json:
        """The wire form of an answer: signed (or, on cue, mis-signed) and encrypted."""
        k = self.keys
        signature = answer_signature(k, answer)
        if self.roll(self.tamper_rate):
            self.tampered += 1
            signature = signature[:-1] + ("1" if signature[-1] == "0" else "0")
            log.info("atom.fault_injected", fault="tamper", merch_txn_id=answer["merchTxnId"])
        return {"encData": seal(k.res_enc_key, answer | {"signature": signature})}


ATOM_STATE = web.AppKey("atom_state", AtomState)


def error(status: int, code: str) -> web.Response:
    """The simulator's JSON error answer."""
    return web.json_response({"error": code}, status=status)


async def read_envelope(request: web.Request) -> tuple[str, str]:
    """merchId and encData from a JSON or form body, or a JSON 400."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("malformed JSON", "body") from None
    else:
        body = dict(await request.post())
    if not isinstance(body, dict):
        raise bad_request("body must be an object", "body")
    merch_id, enc_data = body.get("merchId"), body.get("encData")
    if not isinstance(merch_id, str) or not isinstance(enc_data, str):
        raise bad_request("merchId and encData are required strings", "body")
    return merch_id, enc_data


async def read_request(
    request: web.Request, model: type[RequestT], txn_type: TxnType | RefundTxnType
) -> RequestT | web.Response:
    """The verified request, or the error answer (400 unreadable, 401 unknown or mis-signed)."""
    state = request.app[ATOM_STATE]
    k = state.keys
    merch_id, enc_data = await read_envelope(request)
    if merch_id != k.merch_id:
        return error(401, "unknown_merchant")
    try:
        req = model.model_validate(unseal(k.req_enc_key, enc_data))
    except (ValueError, ValidationError):  # ValidationError is a ValueError; named for readers
        return error(400, "bad_enc_data")
    # A request signed for another txnType is refused, so a signed inquiry cannot be replayed
    # as a charge or a refund.
    if req.merch_id != merch_id or req.txn_type != txn_type:
        return error(400, "bad_request")
    expected = sign(k.req_hash_key, *req.signed_parts(k))
    if not hmac.compare_digest(expected.encode(), req.signature.encode()):
        state.bad_signatures += 1
        log.info("atom.bad_signature", merch_txn_id=req.merch_txn_id, txn_type=txn_type)
        return error(401, "bad_signature")
    return req


async def auth(request: web.Request) -> web.Response:
    """Charge by merchTxnId once; repeats get the stored answer (409 if the amount differs)."""
    state = request.app[ATOM_STATE]
    state.auth_calls += 1
    req = await read_request(request, AtomRequest, "AUTH")
    if isinstance(req, web.Response):
        return req
    # Draw every fault every time, so one rate's change does not shift the other's draws.
    errored, lost = state.roll(state.error_rate), state.roll(state.lost_answer_rate)
    if errored:
        state.errors += 1
        return error(503, "injected")
    answer = state.answers.get(req.merch_txn_id)
    if answer is None:
        answer = state.decide(req)
    elif (answer["amount"], answer["currency"]) != (req.amount, req.currency):
        return error(409, "reference_conflict")
    if lost:
        state.lost_answers += 1
        return error(503, "injected")
    return web.json_response(state.sealed(answer))


async def status(request: web.Request) -> web.Response:
    """Status inquiry: the stored answer, or OTS0404 for a merchTxnId never decided."""
    state = request.app[ATOM_STATE]
    state.status_calls += 1
    req = await read_request(request, AtomRequest, "STATUS")
    if isinstance(req, web.Response):
        return req
    if state.roll(state.error_rate):
        state.errors += 1
        return error(503, "injected")
    answer = state.answers.get(req.merch_txn_id)
    if answer is None:
        answer = {
            "merchTxnId": req.merch_txn_id,
            "atomTxnId": "",
            "statusCode": NO_RECORD,
            "amount": req.amount,
            "currency": req.currency,
        }
    return web.json_response(state.sealed(answer))


async def refund(request: web.Request) -> web.Response:
    """Refund by refundTxnId once; repeats get the stored answer (409 if they differ)."""
    state = request.app[ATOM_STATE]
    state.refund_calls += 1
    req = await read_request(request, AtomRefundRequest, "REFUND")
    if isinstance(req, web.Response):
        return req
    # Draw every fault every time, so one rate's change does not shift the other's draws.
    errored, lost = state.roll(state.error_rate), state.roll(state.lost_answer_rate)
    if errored:
        state.errors += 1
        return error(503, "injected")
    # Looked up and decided with no await in between, so concurrent repeats see one decision.
    answer = state.refund_answers.get(req.refund_txn_id)
    if answer is None:
        answer = state.decide_refund(req)
    elif (answer["merchTxnId"], answer["amount"], answer["currency"]) != (
        req.merch_txn_id,
        req.amount,
        req.currency,
    ):
        return error(409, "reference_conflict")
    if lost:
        state.lost_answers += 1
        return error(503, "injected")
    return web.json_response(state.sealed(answer))


async def refund_status(request: web.Request) -> web.Response:
    """Refund inquiry: the stored answer, or OTS0404 for a refundTxnId never decided."""
    state = request.app[ATOM_STATE]
    state.refund_status_calls += 1
    req = await read_request(request, AtomRefundRequest, "REFUND_STATUS")
    if isinstance(req, web.Response):
        return req
    if state.roll(state.error_rate):
        state.errors += 1
        return error(503, "injected")
    answer = state.refund_answers.get(req.refund_txn_id)
    if answer is None:
        answer = {
            "merchTxnId": req.merch_txn_id,
            "refundTxnId": req.refund_txn_id,
            "atomRefundId": "",
            "statusCode": NO_RECORD,
            "amount": req.amount,
            "currency": req.currency,
        }
    return web.json_response(state.sealed(answer))


async def callback(request: web.Request) -> web.Response:
    """The body Atom would POST to the merchant's callback URL for a decided merchTxnId."""
    state = request.app[ATOM_STATE]
    answer = state.answers.get(request.match_info["merch_txn_id"])
    if answer is None:
        return error(404, "not_found")
    return web.json_response(state.sealed(answer))


async def ledger(request: web.Request) -> web.Response:
    """Approved charges, i.e. money actually taken (count), and refunds, money given back."""
    state = request.app[ATOM_STATE]
    return web.json_response(
        {"charges": state.charges, "count": len(state.charges), "refunds": state.refunds}
    )


async def list_refunds(request: web.Request) -> web.Response:
    """The refund ledger, money actually returned, with the refund call counters."""
    s = request.app[ATOM_STATE]
    return web.json_response(
        {
            "refunds": s.refunds,
            "count": len(s.refunds),
            "calls": s.refund_calls,
            "inquiries": s.refund_status_calls,
        }
    )


async def stats(request: web.Request) -> web.Response:
    """Counters: calls, decisions, refused signatures and injected faults."""
    s = request.app[ATOM_STATE]
    return web.json_response(
        {
            "authCalls": s.auth_calls,
            "statusCalls": s.status_calls,
            "approved": s.approved,
            "declined": s.declined,
            "badSignatures": s.bad_signatures,
            "tampered": s.tampered,
            "errors": s.errors,
            "lostAnswers": s.lost_answers,
            "refundCalls": s.refund_calls,
            "refundStatusCalls": s.refund_status_calls,
            "refunded": s.refunded,
            "refundsRejected": s.refunds_rejected,
        }
    )


async def update_config(request: web.Request) -> web.Response:
    """Change the knobs at run time; decisions change only for new merchTxnIds."""
    state = request.app[ATOM_STATE]
    state.update(await read_model(request, AtomConfig))
    return web.json_response(state.config())


async def reset(request: web.Request) -> web.Response:
    """Clear answers, ledgers and counters."""
    request.app[ATOM_STATE].reset()
    return web.json_response({"reset": True})


def setup_atom(app: web.Application, settings: SimulatorSettings) -> None:
    """Attach Atom state and routes under /atom to `app`."""
    app[ATOM_STATE] = AtomState(
        keys=MerchantKeys.from_settings(settings),
        success_rate=settings.success_rate,
        seed=settings.seed,
        rng=random.Random(settings.fault_seed or None),
        fault_seed=settings.fault_seed,
    )
    app.router.add_post("/atom/auth", auth)
    app.router.add_post("/atom/status", status)
    app.router.add_post("/atom/refund", refund)
    app.router.add_post("/atom/refund-status", refund_status)
    app.router.add_get("/atom/refunds", list_refunds)
    app.router.add_get("/atom/callbacks/{merch_txn_id}", callback)
    app.router.add_get("/atom/ledger", ledger)
    app.router.add_get("/atom/stats", stats)
    app.router.add_post("/atom/admin/config", update_config)
    app.router.add_post("/atom/admin/reset", reset)
