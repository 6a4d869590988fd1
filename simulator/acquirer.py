"""Fake card acquirer: deterministic approve/decline, an idempotent ledger, admin knobs and faults.

Faults model what makes a payment's outcome unknown to the engine: errors and resets before any
decision (nothing was charged), and timeouts or dropped connections after the decision (the
money moved but the answer was lost). By default a reference is decided at most once; with
charge_every_call, like many real acquirers, every authorize call that gets through charges
again under the same reference, so only the engine's inquiry-before-resend prevents a double
charge. Either way the status inquiry tells the truth about what was decided.
"""

import hashlib
import math
import random
import secrets
import time
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from simulator import cards
from simulator.faults import (
    FAULT_KINDS,
    FaultKind,
    Faults,
    fault_rng,
    injected_error,
    respond,
)
from simulator.settings import SimulatorSettings
from simulator.validation import read_model

DECLINE_REASONS = (
    "INSUFFICIENT_BALANCE",
    "INVALID_CARD",
    "EXPIRED_CARD",
    "LIMIT_EXCEEDED",
    "SYSTEM_ERROR",
)

# An empty seed means "unpredictable across runs", yet one process must stay self-consistent,
# so it gets one random seed at import. This is a constant, not mutable state.
PROCESS_SEED = secrets.token_hex(16)

Json = dict[str, Any]

log = structlog.get_logger("simulator.acquirer")


class AuthorizeRequest(BaseModel):
    """Body of POST /acquirer/authorize."""

    # Strict: "100" or true must not pass as an amount; a real acquirer would reject them.
    model_config = ConfigDict(strict=True, extra="ignore")

    reference: str = Field(min_length=1)
    amount: int = Field(gt=0)
    currency: str = Field(min_length=1)
    order_id: str = Field(alias="orderId", min_length=1)
    # A registered card (simulator/cards.py): the charge follows that card, not the seed.
    card_token: str | None = Field(default=None, alias="cardToken")


class ConfigUpdate(BaseModel):
    """Body of POST /acquirer/admin/config; omitted fields stay unchanged."""

    # Forbid unknown keys so a typo such as "sucess_rate" fails loudly instead of doing nothing.
    model_config = ConfigDict(strict=True, extra="forbid")

    success_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: str | None = None
    charge_every_call: bool | None = None
    # Fault knobs, as in SimulatorSettings.
    latency_ms: int | None = Field(default=None, ge=0)
    latency_jitter_ms: int | None = Field(default=None, ge=0)
    timeout_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    hang_ms: int | None = Field(default=None, ge=0)
    timeout_after_charge: bool | None = None
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    error_status: int | None = Field(default=None, ge=500, le=599)
    reset_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    drop_after_charge_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    inquiry_error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    # Setting it (even to the same value) restarts the fault random stream.
    fault_seed: str | None = None
    # Admin-only: answer 503 to every authorize and inquiry for this long; 0 ends an outage.
    down_for_ms: int | None = Field(default=None, ge=0)


@dataclass
class AcquirerState:
    """Per-app acquirer state: run-time config, faults, stored answers, ledger and counters."""

    success_rate: float
    seed: str
    default_faults: Faults
    # No deduplication by reference: every authorize call that gets through charges again.
    charge_every_call: bool = False
    faults: Faults = field(init=False)
    rng: random.Random = field(init=False)
    # time.monotonic() until which the acquirer is "down" (admin down_for_ms).
    down_until: float = 0.0
    answers: dict[str, Json] = field(default_factory=dict)
    charges: list[Json] = field(default_factory=list)
    authorize_calls: int = 0
    approved: int = 0
    declined: int = 0
    inquiries: int = 0
    injected: dict[FaultKind, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))

    def __post_init__(self) -> None:
        self.faults = self.default_faults
        self.rng = fault_rng(self.faults.fault_seed)

    def config(self) -> Json:
        """Current run-time configuration as JSON."""
        down_ms = max(0, math.ceil((self.down_until - time.monotonic()) * 1000))
        config: Json = {
            "success_rate": self.success_rate,
            "seed": self.seed,
            "charge_every_call": self.charge_every_call,
        }
        config |= {f.name: getattr(self.faults, f.name) for f in fields(self.faults)}
        return config | {"down_for_ms": down_ms}

    def update(self, update: ConfigUpdate) -> None:
        """Apply the fields given in an admin config update."""
        changes = update.model_dump(exclude_none=True)
        if "success_rate" in changes:
            self.success_rate = changes.pop("success_rate")
        if "seed" in changes:
            self.seed = changes.pop("seed")
        if "charge_every_call" in changes:
            self.charge_every_call = changes.pop("charge_every_call")
        if "down_for_ms" in changes:
            self.down_until = time.monotonic() + changes.pop("down_for_ms") / 1000
        self.faults = replace(self.faults, **changes)
        if "fault_seed" in changes:
            self.rng = fault_rng(self.faults.fault_seed)

    def reset(self) -> None:
        """Forget answers, charges and counters; faults return to the configured defaults.

        success_rate, seed and charge_every_call are kept: they say what kind of acquirer this is.
        """
        self.answers.clear()
        self.charges.clear()
        self.authorize_calls = self.approved = self.declined = self.inquiries = 0
        self.injected = dict.fromkeys(FAULT_KINDS, 0)
        self.faults = self.default_faults
        self.rng = fault_rng(self.faults.fault_seed)
        self.down_until = 0.0

    def is_down(self) -> bool:
        """Whether an admin outage (down_for_ms) is in progress."""
        return time.monotonic() < self.down_until

    def record_fault(self, kind: FaultKind, reference: str | None) -> None:
        """Count and log one injected fault."""
        self.injected[kind] += 1
        log.info("acquirer.fault_injected", fault=kind, reference=reference)

    def draw_fault(self, faults: Faults) -> FaultKind | None:
        """Pick this authorize call's fault, if any; earlier kinds win when several fire."""
        rates: tuple[tuple[FaultKind, float], ...] = (
            ("reset", faults.reset_rate),
            ("error", faults.error_rate),
            ("timeout", faults.timeout_rate),
            ("drop_after_charge", faults.drop_after_charge_rate),
        )
        # Draw for every kind every time, so changing one rate does not shift the others' draws.
        rolls = [self.rng.random() for _ in rates]
        # random() is in [0, 1): a rate of 1.0 always fires and 0.0 never does.
        return next((kind for (kind, rate), roll in zip(rates, rolls) if roll < rate), None)

    def draw_delay(self, faults: Faults) -> float:
        """This answer's latency in seconds: latency_ms plus uniform jitter."""
        return (faults.latency_ms + self.rng.uniform(0, faults.latency_jitter_ms)) / 1000

    def settle(self, req: AuthorizeRequest, card: str | None = None) -> tuple[Json, int]:
        """The answer for `req` and its HTTP status: stored, newly decided, or a conflict.

        `card` is the verdict of the request's card (cards.verdict), None without one.
        """
        answer = self.answers.get(req.reference)
        if answer is None or self.charge_every_call:
            return self.decide(req, card), 200
        if answer["amount"] != req.amount:
            return {"error": "reference_conflict"}, 409
        return answer, 200

    def decide(self, req: AuthorizeRequest, card: str | None = None) -> Json:
        """Decide a new reference, record the answer (and the charge if approved), return it."""
        seed = self.seed or PROCESS_SEED
        digest = hashlib.sha256(f"{seed}:{req.reference}".encode()).digest()
        roll = int.from_bytes(digest[:8], "big") / 2**64
        answer: Json = {"reference": req.reference}
        # The float division can round up to exactly 1.0, so 1.0 is special-cased to mean "always".
        approved = roll < self.success_rate or self.success_rate >= 1.0
        if card is not None:
            approved = card == "APPROVED"
        if approved:
            now = time.time()
            approval_no = f"AP{int(now * 1000)}"
            answer |= {"status": "APPROVED", "approvalNo": approval_no}
            self.charges.append(
                {
                    "reference": req.reference,
                    "orderId": req.order_id,
                    "amount": req.amount,
                    "currency": req.currency,
                    "approvalNo": approval_no,
                    "chargedAt": datetime.fromtimestamp(now, UTC).isoformat(),
                }
            )
            self.approved += 1
        else:
            reason = (
                card or DECLINE_REASONS[int.from_bytes(digest[8:16], "big") % len(DECLINE_REASONS)]
            )
            answer |= {"status": "DECLINED", "reason": reason}
            self.declined += 1
        answer |= {"amount": req.amount, "currency": req.currency}
        self.answers[req.reference] = answer
        return answer


ACQUIRER_STATE = web.AppKey("acquirer_state", AcquirerState)


async def authorize(request: web.Request) -> web.Response:
    """Approve or decline a payment; repeats of a reference get the stored answer.

    With charge_every_call, each repeat is decided (and, if approved, charged) again instead.

    Faults: down (503), reset and error (nothing decided), timeout (decided first only if
    timeout_after_charge) and drop_after_charge (decided, then the connection is closed).
    """
    state = request.app[ACQUIRER_STATE]
    state.authorize_calls += 1
    if state.is_down():
        state.record_fault("down", None)
        return injected_error()
    req = await read_model(request, AuthorizeRequest)
    faults = state.faults
    fault = state.draw_fault(faults)
    delay = state.draw_delay(faults)
    decides = fault not in ("reset", "error") and not (
        fault == "timeout" and not faults.timeout_after_charge
    )
    # Look up and record with no await in between, so concurrent duplicates of a new reference
    # find the first one's answer and the ledger gets exactly one entry without a lock (unless
    # charge_every_call asks for one entry per call).
    card = cards.verdict(request.app, req.card_token)
    answer, status = state.settle(req, card) if decides else ({"error": "injected"}, 504)
    if fault is not None:
        state.record_fault(fault, req.reference)
    # Latency only after the decision is recorded, for the same reason.
    return await respond(request, fault, faults, delay, answer, status)


async def list_charges(request: web.Request) -> web.Response:
    """List approved charges, i.e. money actually taken."""
    charges = request.app[ACQUIRER_STATE].charges
    return web.json_response({"charges": charges, "count": len(charges)})


async def get_transaction(request: web.Request) -> web.Response:
    """Status inquiry: the stored answer for a reference, 404 if never decided, or a fault."""
    state = request.app[ACQUIRER_STATE]
    state.inquiries += 1
    reference = request.match_info["reference"]
    if state.is_down():
        state.record_fault("down", reference)
        return injected_error()
    if state.rng.random() < state.faults.inquiry_error_rate:
        state.record_fault("inquiry_error", reference)
        return injected_error()
    answer = state.answers.get(reference)
    if answer is None:
        return web.json_response({"error": "not_found"}, status=404)
    if state.charge_every_call:
        # An acquirer that does not deduplicate keeps one transaction per call: its search by
        # reference lists every charge made under it.
        charges = [c for c in state.charges if c["reference"] == reference]
        answer = answer | {"charges": charges, "chargeCount": len(charges)}
    return web.json_response(answer)


async def get_stats(request: web.Request) -> web.Response:
    """Counters: authorize and inquiry HTTP calls, decisions (one per reference), faults."""
    state = request.app[ACQUIRER_STATE]
    stats = {
        "authorizeCalls": state.authorize_calls,
        "approved": state.approved,
        "declined": state.declined,
        "inquiries": state.inquiries,
        "injected": dict(state.injected),
    }
    return web.json_response(stats)


async def update_config(request: web.Request) -> web.Response:
    """Change outcome and fault knobs at run time; outcomes change only for new references."""
    state = request.app[ACQUIRER_STATE]
    state.update(await read_model(request, ConfigUpdate))
    return web.json_response(state.config())


async def reset(request: web.Request) -> web.Response:
    """Clear ledger, stored answers and stats; faults back to the configured defaults."""
    request.app[ACQUIRER_STATE].reset()
    return web.json_response({"reset": True})


def setup_acquirer(app: web.Application, settings: SimulatorSettings) -> None:
    """Attach acquirer state and routes under /acquirer to `app`."""
    app[ACQUIRER_STATE] = AcquirerState(
        success_rate=settings.success_rate,
        seed=settings.seed,
        default_faults=Faults.from_settings(settings),
        charge_every_call=settings.charge_every_call,
    )
    cards.setup_cards(app)
    app.router.add_post("/acquirer/authorize", authorize)
    app.router.add_get("/acquirer/charges", list_charges)
    app.router.add_get("/acquirer/transactions/{reference}", get_transaction)
    app.router.add_get("/acquirer/stats", get_stats)
    app.router.add_post("/acquirer/admin/config", update_config)
    app.router.add_post("/acquirer/admin/reset", reset)
