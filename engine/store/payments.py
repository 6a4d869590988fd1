"""The payments' store: intake, lookups, the worker's claim and outcomes, manual and callback
settlement. Each outcome queues its webhook in the same statement (see payments.sql)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from engine.models import Claimed, NewPayment, Outcome, Payment, Requeue, Settled, Status
from engine.store import db
from engine.store.base import Store, outcome_columns, requeue_columns, translated
from engine.store.queries import leases, load

Q = load("payments")
LEASES = leases(
    table="payment_processes",
    processing="PROCESSING",
    pending="PENDING",
    unresolved="UNRESOLVED",
    reference="tid",
)


class TidCollision(Exception):
    """The random transaction id was taken already; draw another."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewRow:
    """One payment to insert, with the ids the intake drew for it."""

    new: NewPayment
    public_id: str
    tid: str
    default_webhook_url: str
    # A checkout session's payment (insert_one only): the session's id and the card's token.
    checkout_session_id: int | None = None
    card_token: str | None = None


_PAYMENT_FIELDS = frozenset(f.name for f in dataclasses.fields(Payment))


def payment_of(r: asyncpg.Record) -> Payment:
    """A payment row as the model; only the model's fields, so a migration that adds a column
    does not break reads."""
    values = {k: v for k, v in r.items() if k in _PAYMENT_FIELDS}
    values["status"] = Status(values["status"])
    return Payment(**values)


async def insert_one(conn: asyncpg.Pool | asyncpg.Connection, row: NewRow) -> Payment | None:
    """insert_payment on `conn` (a pool, or a connection in the caller's transaction)."""
    new = row.new
    try:
        got = await conn.fetchrow(
            Q["insert_payment"],
            row.public_id,
            row.tid,
            new.mid,
            new.order_id,
            new.user_public_id,
            new.amount,
            new.currency,
            new.echo,
            new.request_digest,
            new.webhook_url,
            new.provider,
            new.order_name,
            new.actor,
            row.default_webhook_url,
            new.mode,
            new.endpoint_id,
            row.checkout_session_id,
            row.card_token,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "payment_processes_tid_key":
            raise TidCollision(row.tid) from exc
        raise
    return payment_of(got) if got else None


def _settled(rows: Sequence[asyncpg.Record]) -> list[Settled]:
    return [Settled(id=r["id"], tid=r["tid"], status=Status(r["status"])) for r in rows]


class Payments(Store):
    """Payments, from intake to a final state."""

    # --- intake and lookups ---

    @translated
    async def insert_payment(
        self, new: NewPayment, *, public_id: str, tid: str, default_webhook_url: str
    ) -> Payment | None:
        """Store a new PENDING payment; None if the merchant already has one for this order."""
        return await insert_one(self.pool, NewRow(new, public_id, tid, default_webhook_url))

    @translated
    async def insert_payments(self, rows: Sequence[NewRow]) -> list[Payment]:
        """insert_payment for many rows in one statement; returns the rows it inserted.

        A row whose order exists, or whose tid is taken, is left out (not an error).
        """
        got = await self.pool.fetch(
            Q["insert_payments"],
            [r.public_id for r in rows],
            [r.tid for r in rows],
            [r.new.mid for r in rows],
            [r.new.order_id for r in rows],
            [r.new.user_public_id for r in rows],
            [r.new.amount for r in rows],
            [r.new.currency for r in rows],
            [db.dumps(r.new.echo) for r in rows],
            [r.new.request_digest for r in rows],
            [r.new.webhook_url for r in rows],
            [r.new.provider for r in rows],
            [r.new.order_name for r in rows],
            [r.new.actor for r in rows],
            [r.default_webhook_url for r in rows],
            [r.new.mode for r in rows],
            [r.new.endpoint_id for r in rows],
        )
        return [payment_of(r) for r in got]

    @translated
    async def payment_by_order(self, mid: str, order_id: str, mode: str) -> Payment | None:
        """The payment a merchant has for an order in `mode`, if any."""
        row = await self.pool.fetchrow(Q["get_payment_by_order"], mid, order_id, mode)
        return payment_of(row) if row else None

    @translated
    async def payment_by_tid(self, tid: str, mid: str, mode: str) -> Payment | None:
        """Merchant `mid`'s payment in `mode` with this transaction id, if it has one."""
        row = await self.pool.fetchrow(Q["get_payment_by_tid"], tid, mid, mode)
        return payment_of(row) if row else None

    @translated
    async def unresolved(self, mid: str, mode: str, after_id: int, limit: int) -> list[Payment]:
        """Merchant `mid`'s UNRESOLVED payments in `mode` after `after_id`, oldest first."""
        rows = await self.pool.fetch(Q["list_unresolved"], after_id, limit, mid, mode)
        return [payment_of(r) for r in rows]

    # --- the worker ---

    @translated
    async def claim_pending(self, owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Claim up to `limit` due PENDING payments for `owner`."""
        rows = await self.pool.fetch(Q["claim_pending"], owner, limit, lease_seconds)
        return [Claimed(**dict(r)) for r in rows]

    @translated
    async def settle(self, owner: str, outcomes: Sequence[Outcome]) -> list[Settled]:
        """Write final states (and their webhooks) for rows `owner` still holds."""
        if not outcomes:
            return []
        columns = outcome_columns(outcomes, "approval_no")
        return _settled(await self.pool.fetch(Q["settle_batch"], *columns, owner))

    @translated
    async def release(
        self, owner: str, ids: Sequence[int], delay_seconds: float, *, unknown: bool = False
    ) -> list[str]:
        """Give held payments back to the queue; returns their tids."""
        if not ids:
            return []
        rows = await self.pool.fetch(Q["release_batch"], list(ids), owner, delay_seconds, unknown)
        return [r["tid"] for r in rows]

    @translated
    async def requeue(self, owner: str, items: Sequence[Requeue]) -> list[Settled]:
        """Put held payments without an outcome back (PENDING or UNRESOLVED)."""
        if not items:
            return []
        rows = await self.pool.fetch(LEASES["requeue"], *requeue_columns(items), owner)
        return _settled(rows)

    @translated
    async def reap_payments(self, limit: int) -> list[tuple[str, str | None]]:
        """Expired PROCESSING leases back to PENDING; returns (tid, old owner)."""
        rows = await self.pool.fetch(LEASES["reap_expired"], limit)
        return [(r["tid"], r["lease_owner"]) for r in rows]

    # --- by hand, by the merchant, by the provider ---

    @translated
    async def settle_manual(
        self,
        tid: str,
        mid: str,
        status: Status,
        approval_no: str | None,
        fail_reason: str | None,
        *,
        actor: str,
    ) -> Settled | None:
        """Settle a payment that is not final yet (manual trigger); None if it was final."""
        rows = await self.pool.fetch(
            Q["settle_manual"], tid, status.value, approval_no, fail_reason, mid, actor
        )
        return next(iter(_settled(rows)), None)

    @translated
    async def cancel(self, tid: str, mid: str, mode: str, actor: str) -> Payment | None:
        """PENDING -> CANCELED (compare-and-set); None if it was not cancelable."""
        row = await self.pool.fetchrow(Q["cancel_payment"], tid, mid, actor, mode)
        return payment_of(row) if row else None

    @translated
    async def settle_from_callback(
        self,
        tid: str,
        provider: str,
        amount: int,
        currency: str,
        outcome: Outcome,
        actor: str,
        modes: Sequence[str],
    ) -> Settled | None:
        """Settle from a provider's callback verified for `modes`; None if final (or not its)."""
        rows = await self.pool.fetch(
            Q["settle_from_callback"],
            tid,
            outcome.status.value,
            outcome.approval_no,
            outcome.fail_reason,
            provider,
            amount,
            currency,
            actor,
            list(modes),
            outcome.approval_no if outcome.status is Status.SUCCESS else None,
            outcome.payment_method,
        )
        return next(iter(_settled(rows)), None)

    @translated
    async def provider_payment(
        self, tid: str, provider: str, modes: Sequence[str]
    ) -> Payment | None:
        """A provider's payment by tid in one of `modes`, whoever its merchant."""
        row = await self.pool.fetchrow(Q["provider_payment"], tid, provider, list(modes))
        return payment_of(row) if row else None

    # --- payments waiting for the customer at the provider (REQUIRES_ACTION) ---

    @translated
    async def require_action(
        self,
        owner: str,
        outcomes: Sequence[Outcome],
        *,
        expires_in: float,
        inquire_in: float,
    ) -> list[ActionRequired]:
        """PROCESSING -> REQUIRES_ACTION for rows `owner` still holds (token and page stored)."""
        if not outcomes:
            return []
        rows = await self.pool.fetch(
            Q["require_action"],
            [o.id for o in outcomes],
            [o.token for o in outcomes],
            [o.action_url for o in outcomes],
            expires_in,
            owner,
            inquire_in,
        )
        return [ActionRequired(**dict(r)) for r in rows]

    @translated
    async def claim_actions(self, limit: int, lease_seconds: float) -> list[tuple[Claimed, bool]]:
        """Due REQUIRES_ACTION payments, each with whether its expiry has passed."""
        rows = await self.pool.fetch(Q["claim_actions"], limit, lease_seconds)
        out = []
        for r in rows:
            values = dict(r)
            expired = bool(values.pop("expired"))
            out.append((Claimed(**values), expired))
        return out

    @translated
    async def settle_actions(
        self, outcomes: Sequence[Outcome], actor: str, atom_txn_ids: Sequence[str | None]
    ) -> list[Settled]:
        """REQUIRES_ACTION -> final (and its webhook); a row settled meanwhile is left alone."""
        if not outcomes:
            return []
        rows = await self.pool.fetch(
            Q["settle_actions"],
            [o.id for o in outcomes],
            [o.status.value for o in outcomes],
            [o.approval_no for o in outcomes],
            [o.fail_reason for o in outcomes],
            list(atom_txn_ids),
            [o.payment_method for o in outcomes],
            actor,
        )
        return _settled(rows)

    @translated
    async def record_late_callback(
        self, payment: Payment, provider: str, outcome: Outcome, amount: int, currency: str
    ) -> bool:
        """Keep a callback that came after `payment` was final the other way; True if new."""
        new = await self.pool.fetchval(
            Q["record_late_callback"],
            payment.id,
            provider,
            outcome.status.value,
            outcome.approval_no,
            outcome.fail_reason,
            amount,
            currency,
            payment.status.value,
        )
        return new is not None

    @translated
    async def late_callbacks(self, limit: int = 100) -> list[LateCallback]:
        """Late callbacks nobody has reviewed yet, oldest first."""
        rows = await self.pool.fetch(Q["late_callbacks"], limit)
        return [LateCallback(**dict(r)) for r in rows]


@dataclasses.dataclass(frozen=True, slots=True)
class ActionRequired:
    """A payment now waiting for its customer at the provider's page."""

    id: int
    tid: str
    atom_token_id: str | None
    action_expires_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class LateCallback:
    """A provider's callback that came after its payment was final the other way."""

    id: int
    callback_status: str
    callback_atom_txn_id: str | None
    received_at: datetime
    payment_status: str
    tid: str
    mid: str
    mode: str
    provider: str
    amount: int
    currency: str
    fail_reason: str | None
