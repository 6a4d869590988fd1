"""The fake Atom's state: its knobs, the answers it decided (each once, by reference), the
ledgers of money taken and given back, and its counters."""

import asyncio
import hashlib
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from simulator.acquirer import DECLINE_REASONS, PROCESS_SEED
from simulator.atom_wire import (
    APPROVED,
    DECLINED,
    TOKEN_ISSUED,
    AtomRefundRequest,
    AtomRequest,
    Json,
    MerchantKeys,
    answer_signature,
    seal,
)

log = structlog.get_logger("simulator.atom")


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
    # How the hosted page's callback goes once the customer chose: "normal" (once, before the
    # browser is sent back), "never", "twice", "late" (Atom decides and calls back only after
    # callback_delay_seconds; the browser is sent back at once), "bad_signature".
    callback: Literal["normal", "never", "twice", "late", "bad_signature"] | None = None
    callback_delay_seconds: float | None = Field(default=None, ge=0.0, le=3600.0)
    # A token this old cannot be paid any more (the page says it expired); 0: none can.
    token_ttl_seconds: float | None = Field(default=None, ge=0.0, le=86400.0)


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
    callback: str = "normal"
    callback_delay_seconds: float = 5.0
    token_ttl_seconds: float = 600.0
    rng: random.Random = field(default_factory=random.Random)
    # Hosted payment page tokens: atomTokenId -> {merchTxnId, amount, currency, returnUrl,
    # callbackUrl, issuedAt, choice}. choice is None until the customer approves or declines.
    tokens: dict[str, Json] = field(default_factory=dict)
    # Every callback POST made: {merchTxnId, url, kind, status (HTTP, or None if it failed)}.
    callbacks_sent: list[Json] = field(default_factory=list)
    # Choices whose decision and callback come late: atomTokenId -> approved?
    late: dict[str, bool] = field(default_factory=dict)
    # Late callbacks waiting to go (kept so they are not garbage-collected mid-sleep).
    pending: set[asyncio.Task[None]] = field(default_factory=set)
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
            "callback",
            "callback_delay_seconds",
            "token_ttl_seconds",
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
        self.tokens.clear()
        self.callbacks_sent.clear()
        self.late.clear()
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

    def issue_token(self, req: AtomRequest, page_base: str) -> Json:
        """A hosted AUTH: a token for the payment page, charged nothing yet; recorded."""
        assert req.return_url is not None and req.callback_url is not None
        token = f"AT{secrets.token_hex(12)}"
        self.tokens[token] = {
            "merchTxnId": req.merch_txn_id,
            "amount": req.amount,
            "currency": req.currency,
            "returnUrl": req.return_url,
            "callbackUrl": req.callback_url,
            "issuedAt": time.time(),
            "choice": None,
        }
        answer: Json = {
            "merchTxnId": req.merch_txn_id,
            "atomTxnId": "",
            "atomTokenId": token,
            "actionUrl": f"{page_base}/atom/pay/{token}",
            "statusCode": TOKEN_ISSUED,
            "amount": req.amount,
            "currency": req.currency,
        }
        self.answers[req.merch_txn_id] = answer
        return answer

    def choose(self, token: str, approve: bool) -> Json:
        """The customer approved or declined on the page: the final answer, recorded (and the
        charge, if approved), replacing the token answer STATUS gave so far."""
        t = self.tokens[token]
        now = time.time()
        answer: Json = {
            "merchTxnId": t["merchTxnId"],
            "atomTxnId": f"{int(now * 1000)}{len(self.answers) % 1000:03d}",
            "amount": t["amount"],
            "currency": t["currency"],
            "paymentMethod": "card",
        }
        if approve:
            answer["statusCode"] = APPROVED
            self.charges.append(
                {
                    "merchTxnId": t["merchTxnId"],
                    "atomTxnId": answer["atomTxnId"],
                    "amount": int(t["amount"]),
                    "currency": t["currency"],
                    "chargedAt": datetime.fromtimestamp(now, UTC).isoformat(),
                }
            )
            self.approved += 1
        else:
            answer |= {"statusCode": DECLINED, "description": "DECLINED_BY_CUSTOMER"}
            self.declined += 1
        self.answers[t["merchTxnId"]] = answer
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

    def sealed(self, answer: Json, *, tamper: bool = False) -> Json:
        """The wire form of an answer: signed (or, on cue, mis-signed) and encrypted."""
        k = self.keys
        signature = answer_signature(k, answer)
        if self.roll(self.tamper_rate) or tamper:
            self.tampered += 1
            signature = signature[:-1] + ("1" if signature[-1] == "0" else "0")
            log.info("atom.fault_injected", fault="tamper", merch_txn_id=answer["merchTxnId"])
        return {"encData": seal(k.res_enc_key, answer | {"signature": signature})}
