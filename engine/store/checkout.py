"""The checkout sessions' store: create, read, the compare-and-set transitions, and a confirm
that closes the session and stores its payment in one transaction (see checkout.sql)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.models import Payment
from engine.store import payments
from engine.store.base import Store, translated
from engine.store.notices import Notices
from engine.store.queries import load

Q = load("checkout")
# The channel session changes are announced on (migration 0020):
# NOTIFY checkout '<public id> <version> <session status> <payment status>', the payment
# status '-' for none and '?' for "unknown, read the session".
CHANNEL = "checkout"
NO_PAYMENT = "-"
UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class Notice:
    """One announced change of a session: its version and the state it reached."""

    public_id: str
    version: int
    status: str | None  # None: the notice does not say (an old two-word one)
    payment_status: str | None  # None: no payment, or unknown (see `known`)
    known: bool  # the notice says the whole state: no read needed to know it

    def text(self) -> str:
        """The NOTIFY payload."""
        payment = self.payment_status or (NO_PAYMENT if self.known else UNKNOWN)
        return f"{self.public_id} {self.version} {self.status} {payment}"

    @classmethod
    def of(cls, public_id: str, version: int, status: str, payment_status: str | None) -> Notice:
        """A change whose whole state is known (payment_status None: the session has none)."""
        return cls(public_id, version, status, payment_status, True)

    @classmethod
    def parse(cls, payload: str) -> Notice | None:
        """A payload read back; None if it is not one (nothing to act on)."""
        words = payload.split(" ")
        if len(words) < 2 or not words[1].isdigit() or len(words[1]) > 9:
            return None
        version = int(words[1])
        if len(words) != 4:  # '<id> <version>': sent before migration 0020
            return cls(words[0], version, None, None, False)
        status, payment = words[2], words[3]
        known = payment != UNKNOWN
        return cls(
            words[0], version, status, None if payment in (NO_PAYMENT, UNKNOWN) else payment, known
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOrder:
    """What a merchant's server asked a session for: the order, where the customer goes back
    to, and the request's idempotency key, digest and actor (what a replay is compared by)."""

    mid: str
    mode: str
    order_id: str
    order_name: str
    amount: int
    currency: str
    customer_ref: str | None
    success_url: str | None
    cancel_url: str | None
    idempotency_key: str | None
    request_digest: str
    actor: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSession(SessionOrder):
    """A validated session request of a merchant's server, and how long it may stay open."""

    expires_in_seconds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Session(SessionOrder):
    """One checkout session: its order as asked, where it is, its merchant's name and its
    payment (if it made one)."""

    id: int
    public_id: str
    client_secret: str
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    scanned_at: datetime | None
    closed_at: datetime | None
    customer_id: int | None
    merchant_name: str
    payment_tid: str | None
    payment_status: str | None
    payment_approval_no: str | None
    payment_fail_reason: str | None
    payment_refunded_amount: int | None
    payment_provider: str | None = None
    # The provider's page the customer must visit (a REQUIRES_ACTION payment's), if any.
    payment_action_url: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnView:
    """What the return page shows of a checkout session's payment."""

    tid: str
    mode: str
    mid: str
    status: str
    amount: int
    currency: str
    fail_reason: str | None
    provider: str
    session_id: str
    order_name: str
    success_url: str | None
    cancel_url: str | None
    merchant_name: str


@dataclass(frozen=True, slots=True)
class CustomerPayment:
    """A line of a customer's usage history, with the refunds made on it."""

    id: int
    tid: str
    amount: int
    currency: str
    status: str
    requested_at: datetime
    refunded_amount: int
    approval_no: str | None
    fail_reason: str | None
    order_name: str
    session_id: str
    merchant_name: str
    refunds: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Closed:
    """What a confirm's or a cancel's compare-and-set wrote, as it RETURNed it."""

    id: int
    version: int
    status: str
    closed_at: datetime
    customer_id: int | None
    updated_at: datetime


class SessionMoved(Exception):
    """The session was no longer open or scanned (or its time was up): nothing was written."""


class _NoRow(Exception):
    """The payment's insert found its order (or its tid) taken: roll the session back too."""


class Checkout(Store):
    """Checkout sessions and the payments they make.

    The customer's steps (scan, confirm, cancel, expiry on read) notify the listening web
    processes after their commit, through `notices` (coalesced). A notice lost to a crash right
    after a commit delays only a stream on another web process; the streams of the crashed one
    reconnect and read the session afresh, and the worker's changes still notify in the
    transaction that makes them.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.notices = Notices(pool, CHANNEL)

    @translated
    async def create(self, new: NewSession, public_id: str, client_secret: str) -> str | None:
        """Store an open session; None when its order or idempotency key exists already."""
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            Q["insert_session"],
            public_id,
            client_secret,
            new.mid,
            new.mode,
            new.order_id,
            new.order_name,
            new.amount,
            new.currency,
            new.customer_ref,
            new.success_url,
            new.cancel_url,
            new.expires_in_seconds,
            new.idempotency_key,
            new.request_digest,
            new.actor,
        )

    @translated
    async def existing(
        self, mid: str, mode: str, order_id: str, idempotency_key: str | None
    ) -> str | None:
        """The public id of the session a create collided with."""
        return await self.pool.fetchval(  # type: ignore[no-any-return]
            Q["existing_session"], mid, mode, order_id, idempotency_key
        )

    @translated
    async def session(self, public_id: str) -> Session | None:
        """A session by public id (callers check its merchant and mode)."""
        row = await self.pool.fetchrow(Q["session"], public_id)
        return Session(**dict(row)) if row else None

    async def _customer_step(
        self, statement: str, public_id: str, status: str, *args: Any
    ) -> asyncpg.Record | None:
        """One of the customer's steps on a session (a statement returning the new version),
        moving it to `status`: its notice goes after the commit (migration 0015). The row the
        statement returned if this call moved it, else None."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["notify_after_commit"])
            moved = await conn.fetchrow(statement, public_id, *args)
        if moved is None:
            return None
        self.notices.send(Notice.of(public_id, moved["version"], status, None).text())
        return moved

    @translated
    async def expire(self, public_id: str) -> bool:
        """open|scanned -> expired if its time is up; True if this call moved it."""
        return await self._customer_step(Q["expire"], public_id, "expired") is not None

    @translated
    async def expire_due(self, limit: int) -> list[str]:
        """Expire up to `limit` sessions whose time is up; their public ids."""
        return [r["public_id"] for r in await self.pool.fetch(Q["expire_due"], limit)]

    @translated
    async def scan(self, public_id: str, customer_id: int) -> bool:
        """open -> scanned (the app opened it); True if this call moved it."""
        return await self._customer_step(Q["scan"], public_id, "scanned", customer_id) is not None

    @translated
    async def cancel(self, public_id: str, customer_id: int) -> Closed | None:
        """open|scanned -> canceled by the customer; what it wrote if this call moved it."""
        moved = await self._customer_step(
            Q["close"], public_id, "canceled", customer_id, "canceled"
        )
        return Closed(**dict(moved)) if moved is not None else None

    @translated
    async def confirm(
        self,
        public_id: str,
        customer_id: int | None,
        card_token: str | None,
        row: payments.NewRow,
    ) -> tuple[Payment, Closed] | None:
        """open|scanned -> confirmed and its PENDING payment, in one transaction: the payment
        and what the session's compare-and-set wrote.

        SessionMoved if the session had moved on (nothing written); None if the payment's
        order or tid is taken (nothing written either: the session stays as it was).
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(Q["notify_after_commit"])
                closed = await conn.fetchrow(Q["close"], public_id, customer_id, "confirmed")
                if closed is None:
                    raise SessionMoved(public_id)
                linked = dataclasses.replace(
                    row, checkout_session_id=closed["id"], card_token=card_token
                )
                payment = await payments.insert_one(conn, linked)
                if payment is None:
                    raise _NoRow()
        except _NoRow:
            return None
        done = Closed(**dict(closed))
        self.notices.send(Notice.of(public_id, done.version, done.status, payment.status).text())
        return payment, done

    @translated
    async def return_view(self, tid: str, mode: str) -> ReturnView | None:
        """A checkout session's payment as the return page shows it (None: no such one)."""
        row = await self.pool.fetchrow(Q["return_view"], tid, mode)
        return ReturnView(**dict(row)) if row else None

    @translated
    async def customer_payments(self, customer_id: int, limit: int) -> list[CustomerPayment]:
        """Customer `customer_id`'s payments across merchants, newest first, with refunds."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(Q["customer_payments"], customer_id, limit)
            refunds = await conn.fetch(Q["refunds_of"], [r["id"] for r in rows])
        by_payment: dict[int, list[dict[str, Any]]] = {}
        for r in refunds:
            by_payment.setdefault(r["payment_id"], []).append(dict(r))
        return [
            CustomerPayment(**dict(r), refunds=tuple(by_payment.get(r["id"], ()))) for r in rows
        ]
