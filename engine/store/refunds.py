"""The refunds' store: accept (reserve the amount, insert), lookups, the worker's claim and
outcomes. A settled refund moves its payment's totals and queues its webhook in one statement."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg

from engine.models import ClaimedRefund, Refund, RefundOutcome, RefundStatus, Requeue
from engine.store.base import Store, outcome_columns, requeue_columns, translated
from engine.store.queries import leases, load

Q = load("refunds")
LEASES = leases(
    table="refunds",
    processing="REFUND_PROCESSING",
    pending="REFUND_PENDING",
    unresolved="REFUND_UNRESOLVED",
    reference="public_id",
)


class RefundKeyTaken(Exception):
    """A concurrent request made a refund with this idempotency key first."""


_REFUND_FIELDS = frozenset(f.name for f in dataclasses.fields(Refund))


def _refund(r: Any) -> Refund:
    values = {k: v for k, v in dict(r).items() if k in _REFUND_FIELDS}
    values["status"] = RefundStatus(values["status"])
    return Refund(**values)


class Refunds(Store):
    """Refunds of settled payments, from accept to a final state."""

    @translated
    async def refund_by_key(self, mid: str, mode: str, key: str) -> Refund | None:
        """The merchant's refund in `mode` made with this idempotency key, if any."""
        row = await self.pool.fetchrow(Q["refund_by_key"], mid, key, mode)
        return _refund(row) if row else None

    @translated
    async def create_refund(
        self,
        *,
        tid: str,
        mid: str,
        mode: str,
        amount: int,
        reason: str | None,
        key: str,
        digest: str,
        public_id: str,
        actor: str,
    ) -> Refund | None:
        """Reserve the amount and store the refund in one transaction; None if not refundable.

        Raises RefundKeyTaken if a concurrent request made a refund with the same key first.
        """
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    reserved = await conn.fetchrow(Q["reserve_refund"], tid, mid, amount, mode)
                    if reserved is None:
                        return None
                    row = await conn.fetchrow(
                        Q["insert_refund"],
                        public_id,
                        reserved["id"],
                        mid,
                        amount,
                        reserved["currency"],
                        reason,
                        key,
                        digest,
                        actor,
                        mode,
                    )
            except asyncpg.UniqueViolationError as exc:
                # The reservation rolled back with it; the other request's refund stands.
                raise RefundKeyTaken(key) from exc
        assert row is not None
        return _refund(dict(row) | {"tid": tid})

    @translated
    async def refunds_of(self, tid: str, mid: str, mode: str) -> list[Refund]:
        """The refunds of merchant `mid`'s payment `tid` in `mode`, oldest first."""
        rows = await self.pool.fetch(Q["refunds_of_payment"], tid, mid, mode)
        return [_refund(r) for r in rows]

    @translated
    async def refund(self, public_id: str, mid: str, mode: str) -> Refund | None:
        """Merchant `mid`'s refund in `mode` by its public id."""
        row = await self.pool.fetchrow(Q["refund_by_public_id"], public_id, mid, mode)
        return _refund(row) if row else None

    # --- the worker ---

    @translated
    async def claim_refunds(
        self, owner: str, limit: int, lease_seconds: float
    ) -> list[ClaimedRefund]:
        """Claim up to `limit` due refunds for `owner`."""
        rows = await self.pool.fetch(Q["claim_refunds"], owner, limit, lease_seconds)
        return [ClaimedRefund(**dict(r)) for r in rows]

    @translated
    async def settle_refunds(self, owner: str, outcomes: Sequence[RefundOutcome]) -> list[str]:
        """Write final refund states (payment totals, webhooks) for refunds `owner` holds."""
        if not outcomes:
            return []
        columns = outcome_columns(outcomes, "refund_no")
        rows = await self.pool.fetch(Q["settle_refunds"], *columns, owner)
        return [r["public_id"] for r in rows]

    @translated
    async def requeue_refunds(self, owner: str, items: Sequence[Requeue]) -> int:
        """Put held refunds without an outcome back (pending or unresolved)."""
        if not items:
            return 0
        rows = await self.pool.fetch(LEASES["requeue"], *requeue_columns(items), owner)
        return len(rows)

    @translated
    async def reap_refunds(self, limit: int) -> list[tuple[str, str | None]]:
        """Expired refund leases back to REFUND_PENDING; returns (refund id, old owner)."""
        rows = await self.pool.fetch(LEASES["reap_expired"], limit)
        return [(r["public_id"], r["lease_owner"]) for r in rows]

    @translated
    async def release_refunds(self, owner: str, ids: Sequence[int], *, unknown: bool) -> int:
        """Give held refunds back now."""
        if not ids:
            return 0
        return len(await self.pool.fetch(Q["release_refunds"], list(ids), owner, unknown))
