"""Fake card acquirer: deterministic approve/decline, an idempotent ledger and admin knobs."""

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

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


class AuthorizeRequest(BaseModel):
    """Body of POST /acquirer/authorize."""

    # Strict: "100" or true must not pass as an amount; a real acquirer would reject them.
    model_config = ConfigDict(strict=True, extra="ignore")

    reference: str = Field(min_length=1)
    amount: int = Field(gt=0)
    currency: str = Field(min_length=1)
    order_id: str = Field(alias="orderId", min_length=1)


class ConfigUpdate(BaseModel):
    """Body of POST /acquirer/admin/config; omitted fields stay unchanged."""

    # Forbid unknown keys so a typo such as "sucess_rate" fails loudly instead of doing nothing.
    model_config = ConfigDict(strict=True, extra="forbid")

    success_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    latency_ms: int | None = Field(default=None, ge=0)
    seed: str | None = None


@dataclass
class AcquirerState:
    """Per-app acquirer state: run-time config, stored answers, ledger and counters."""

    success_rate: float
    latency_ms: int
    seed: str
    answers: dict[str, Json] = field(default_factory=dict)
    charges: list[Json] = field(default_factory=list)
    authorize_calls: int = 0
    approved: int = 0
    declined: int = 0

    def config(self) -> Json:
        """Current run-time configuration as JSON."""
        return {"success_rate": self.success_rate, "latency_ms": self.latency_ms, "seed": self.seed}

    def reset(self) -> None:
        """Forget every answer, charge and counter; configuration is kept."""
        self.answers.clear()
        self.charges.clear()
        self.authorize_calls = self.approved = self.declined = 0

    def decide(self, req: AuthorizeRequest) -> Json:
        """Decide a new reference, record the answer (and the charge if approved), return it."""
        seed = self.seed or PROCESS_SEED
        digest = hashlib.sha256(f"{seed}:{req.reference}".encode()).digest()
        roll = int.from_bytes(digest[:8], "big") / 2**64
        answer: Json = {"reference": req.reference}
        # The float division can round up to exactly 1.0, so 1.0 is special-cased to mean "always".
        if roll < self.success_rate or self.success_rate >= 1.0:
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
            reason = DECLINE_REASONS[int.from_bytes(digest[8:16], "big") % len(DECLINE_REASONS)]
            answer |= {"status": "DECLINED", "reason": reason}
            self.declined += 1
        answer |= {"amount": req.amount, "currency": req.currency}
        self.answers[req.reference] = answer
        return answer


ACQUIRER_STATE = web.AppKey("acquirer_state", AcquirerState)


async def authorize(request: web.Request) -> web.Response:
    """Approve or decline a payment; repeats of a reference get the stored answer."""
    state = request.app[ACQUIRER_STATE]
    state.authorize_calls += 1
    req = await read_model(request, AuthorizeRequest)
    # Look up and record with no await in between, so concurrent duplicates of a new reference
    # find the first one's answer and the ledger gets exactly one entry without a lock.
    answer = state.answers.get(req.reference)
    if answer is None:
        answer = state.decide(req)
    elif answer["amount"] != req.amount:
        return web.json_response({"error": "reference_conflict"}, status=409)
    # Latency only after the decision is recorded, for the same reason.
    await asyncio.sleep(state.latency_ms / 1000)
    return web.json_response(answer)


async def list_charges(request: web.Request) -> web.Response:
    """List approved charges, i.e. money actually taken."""
    charges = request.app[ACQUIRER_STATE].charges
    return web.json_response({"charges": charges, "count": len(charges)})


async def get_transaction(request: web.Request) -> web.Response:
    """Status inquiry: the stored answer for a reference, or 404."""
    answer = request.app[ACQUIRER_STATE].answers.get(request.match_info["reference"])
    if answer is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(answer)


async def get_stats(request: web.Request) -> web.Response:
    """Counters: every authorize HTTP call, and approved/declined decisions (one per reference)."""
    state = request.app[ACQUIRER_STATE]
    stats = {
        "authorizeCalls": state.authorize_calls,
        "approved": state.approved,
        "declined": state.declined,
    }
    return web.json_response(stats)


async def update_config(request: web.Request) -> web.Response:
    """Change success_rate / latency_ms / seed at run time; affects only new references."""
    state = request.app[ACQUIRER_STATE]
    update = await read_model(request, ConfigUpdate)
    if update.success_rate is not None:
        state.success_rate = update.success_rate
    if update.latency_ms is not None:
        state.latency_ms = update.latency_ms
    if update.seed is not None:
        state.seed = update.seed
    return web.json_response(state.config())


async def reset(request: web.Request) -> web.Response:
    """Clear ledger, stored answers and stats."""
    request.app[ACQUIRER_STATE].reset()
    return web.json_response({"reset": True})


def setup_acquirer(app: web.Application, settings: SimulatorSettings) -> None:
    """Attach acquirer state and routes under /acquirer to `app`."""
    app[ACQUIRER_STATE] = AcquirerState(
        success_rate=settings.success_rate, latency_ms=settings.latency_ms, seed=settings.seed
    )
    app.router.add_post("/acquirer/authorize", authorize)
    app.router.add_get("/acquirer/charges", list_charges)
    app.router.add_get("/acquirer/transactions/{reference}", get_transaction)
    app.router.add_get("/acquirer/stats", get_stats)
    app.router.add_post("/acquirer/admin/config", update_config)
    app.router.add_post("/acquirer/admin/reset", reset)
