"""Accepting a payment: idempotent on (mid, orderId), committed before anyone hears 202."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import structlog

from engine import errors, ids
from engine.models import NewPayment, Payment
from engine.repository import Repository, TidCollision

log = structlog.get_logger()

# A tid has 10**8 values a day; a collision is rare and another draw fixes it.
_TID_DRAWS = 8


def request_digest(fields: dict[str, Any]) -> str:
    """A digest of a request that ignores key order, so a replay matches its original."""
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Accepted:
    """The stored payment and whether this request created it."""

    payment: Payment
    created: bool


async def accept(
    repo: Repository, new: NewPayment, *, snowflake: ids.Snowflake, tid_prefix: str,
    default_webhook_url: str,
) -> Accepted:  # fmt: skip
    """Store a PENDING payment, or return the one this order already has.

    The same order with the same request is a replay and gets the same transaction; the same
    order with a different request raises IdempotencyConflict.
    """
    for _ in range(_TID_DRAWS):
        try:
            created = await repo.insert_payment(
                new, public_id=snowflake.next_id(), tid=ids.new_tid(tid_prefix),
                default_webhook_url=default_webhook_url,
            )  # fmt: skip
        except TidCollision as exc:
            log.warning("payment.tid_collision", tid=str(exc))
            continue
        if created is not None:
            log.info("payment.initiated", tid=created.tid, order_id=new.order_id,
                     amount=new.amount, currency=new.currency)  # fmt: skip
            return Accepted(created, True)
        existing = await repo.payment_by_order(new.mid, new.order_id)
        if existing is None:  # deleted between the two statements: not something we do
            continue
        if existing.request_digest != new.request_digest:
            raise errors.IdempotencyConflict(new.order_id, existing.tid)
        log.info("payment.replayed", tid=existing.tid, order_id=new.order_id)
        return Accepted(existing, False)
    raise RuntimeError("could not draw a free transaction id")
