"""Refunds at the fake acquirer: by reference, idempotent, never above what was charged.

A refund names the payment's reference. It is REFUNDED if that payment was charged and the
refunds so far plus this one stay within the charge, else REJECTED with a reason. The same
faults as authorize apply (an error or reset decides nothing; a timeout or a dropped answer
comes after the decision), and the inquiry tells the truth.
"""

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from simulator.acquirer import ACQUIRER_STATE, AcquirerState
from simulator.faults import injected_error, respond
from simulator.validation import read_model

Json = dict[str, Any]


class RefundRequest(BaseModel):
    """Body of POST /acquirer/refunds."""

    model_config = ConfigDict(strict=True, extra="ignore")

    reference: str = Field(min_length=1)
    payment_reference: str = Field(alias="paymentReference", min_length=1)
    amount: int = Field(gt=0)
    currency: str = Field(min_length=1)


@dataclass
class RefundState:
    """Stored refund answers (by reference) and the ledger of money returned."""

    answers: dict[str, Json] = field(default_factory=dict)
    ledger: list[Json] = field(default_factory=list)
    calls: int = 0
    inquiries: int = 0

    def decide(self, acquirer: AcquirerState, req: RefundRequest) -> tuple[Json, int]:
        """The stored answer for this reference, or a new decision recorded now."""
        answer = self.answers.get(req.reference)
        if answer is not None:
            if (
                answer["amount"] != req.amount
                or answer["paymentReference"] != req.payment_reference
            ):
                return {"error": "reference_conflict"}, 409
            return answer, 200
        charge = next(
            (c for c in acquirer.charges if c["reference"] == req.payment_reference), None
        )
        refunded = sum(
            r["amount"] for r in self.ledger if r["paymentReference"] == req.payment_reference
        )
        answer = {
            "reference": req.reference,
            "paymentReference": req.payment_reference,
            "amount": req.amount,
            "currency": req.currency,
        }
        if charge is None:
            answer |= {"status": "REJECTED", "reason": "NOT_CAPTURED"}
        elif refunded + req.amount > charge["amount"]:
            answer |= {"status": "REJECTED", "reason": "EXCEEDS_CAPTURED"}
        else:
            now = time.time()
            answer |= {"status": "REFUNDED", "refundNo": f"RF{int(now * 1000)}"}
            self.ledger.append(
                answer | {"refundedAt": datetime.fromtimestamp(now, UTC).isoformat()}
            )
        self.answers[req.reference] = answer
        return answer, 200


REFUND_STATE = web.AppKey("refund_state", RefundState)


async def refund(request: web.Request) -> web.Response:
    """Refund (part of) a charged payment; repeats of a reference get the stored answer."""
    state, acquirer = request.app[REFUND_STATE], request.app[ACQUIRER_STATE]
    state.calls += 1
    if acquirer.is_down():
        acquirer.record_fault("down", None)
        return injected_error()
    req = await read_model(request, RefundRequest)
    faults = acquirer.faults
    fault = acquirer.draw_fault(faults)
    delay = acquirer.draw_delay(faults)
    decides = fault not in ("reset", "error") and not (
        fault == "timeout" and not faults.timeout_after_charge
    )
    # Decided and recorded before any await, so concurrent duplicates see one decision.
    answer, status = state.decide(acquirer, req) if decides else ({"error": "injected"}, 504)
    if fault is not None:
        acquirer.record_fault(fault, req.reference)
    return await respond(request, fault, faults, delay, answer, status)


async def get_refund(request: web.Request) -> web.Response:
    """Refund inquiry: the stored answer, or 404 if this reference was never decided."""
    state, acquirer = request.app[REFUND_STATE], request.app[ACQUIRER_STATE]
    state.inquiries += 1
    if acquirer.is_down():
        acquirer.record_fault("down", None)
        return injected_error()
    answer = state.answers.get(request.match_info["reference"])
    if answer is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(answer)


async def list_refunds(request: web.Request) -> web.Response:
    """The ledger: money actually returned."""
    state = request.app[REFUND_STATE]
    return web.json_response(
        {
            "refunds": state.ledger,
            "count": len(state.ledger),
            "calls": state.calls,
            "inquiries": state.inquiries,
        }
    )


def setup_refunds(app: web.Application) -> None:
    """Attach refund state and routes under /acquirer/refunds (after setup_acquirer)."""
    app[REFUND_STATE] = RefundState()
    app.router.add_post("/acquirer/refunds", refund)
    app.router.add_get("/acquirer/refunds", list_refunds)
    app.router.add_get("/acquirer/refunds/{reference}", get_refund)
