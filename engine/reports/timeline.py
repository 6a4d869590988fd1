"""One payment's timeline: state changes, cancel, refunds and webhook attempts, in time order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine import errors
from engine.store.reports import ReportsStore


def actor_kind(actor: str) -> str:
    """Who an actor string names: api_key, user, operator or engine.

    Recorded actors are "merchant:<key prefix>" (an API key), "user:<email>" (a back-office
    user), "operator:<name>", and anything else is the engine (a worker, the reaper, a
    provider's callback).
    """
    if actor.startswith("merchant:"):
        return "api_key"
    if actor.startswith("user:"):
        return "user"
    if actor.startswith("operator:"):
        return "operator"
    return "engine"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a timeline.

    kind: state (the payment's status changed), cancel (to CANCELED), refund (a refund was
    asked for or changed state; detail has amount, currency, reason) or webhook (one attempt;
    detail has deliveryId, eventId, url, attempt, requestHeaders, requestBody, responseCode,
    responseExcerpt, error, finishedAt). actor is as recorded; actor_kind classifies it.
    """

    at: datetime
    kind: str
    actor: str
    actor_kind: str
    from_status: str | None
    to_status: str | None
    refund_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


async def timeline(store: ReportsStore, mid: str, mode: str, tid: str) -> list[Entry]:
    """Everything that happened to the merchant's payment `tid` in `mode`, oldest first.

    PaymentNotFound if it is not this merchant's payment in this mode (another's is never
    shown, nor said to exist).
    """
    rows = await store.timeline(mid, mode, tid)
    if not rows and await store.find_exact(mid, mode, tid) != tid:
        raise errors.PaymentNotFound(tid)
    return [
        Entry(
            at=r["at"],
            kind=r["kind"],
            actor=r["actor"],
            actor_kind=actor_kind(r["actor"]),
            from_status=r["from_status"],
            to_status=r["to_status"],
            refund_id=r["refund_id"],
            detail=r["detail"],
        )
        for r in rows
    ]
