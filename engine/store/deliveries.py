"""The webhook outbox's store: the senders' claim and outcomes, the reaper, dead letters and
the merchant's resend. Deliveries are inserted by the statements that settle a payment or a
refund (payments.sql, refunds.sql), so a final state never goes without its webhook."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from engine import errors
from engine.models import Delivery, DeliveryRecord, Status
from engine.store import db
from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("deliveries")


@dataclasses.dataclass(frozen=True, slots=True)
class Delivered:
    """One webhook attempt that got a 2xx."""

    id: int
    code: int
    started: datetime
    attempt_no: int
    # The request as sent and the start of the answer (see webhooks.delivery.Capture).
    request_headers: dict[str, str] | None = None
    request_body: str | None = None
    response_excerpt: str | None = None


class Deliveries(Store):
    """Webhook deliveries, each one event of a payment (or its refund) to one url."""

    # --- the senders ---

    @translated
    async def claim_deliveries(
        self, owner: str, limit: int, lease_seconds: float
    ) -> list[Delivery]:
        """Claim up to `limit` due webhook deliveries for `owner`."""
        rows = await self.pool.fetch(Q["claim_deliveries"], owner, limit, lease_seconds)
        return [Delivery(**dict(r)) for r in rows]

    @translated
    async def deliveries_succeeded(self, owner: str, done: Sequence[Delivered]) -> set[int]:
        """Record 2xx answers; returns the ids `owner` still held (and so recorded)."""
        if not done:
            return set()
        rows = await self.pool.fetch(
            Q["deliveries_succeeded"],
            [d.id for d in done],
            owner,
            [d.code for d in done],
            [d.started for d in done],
            [d.attempt_no for d in done],
            [None if d.request_headers is None else db.dumps(d.request_headers) for d in done],
            [d.request_body for d in done],
            [d.response_excerpt for d in done],
        )
        return {r["id"] for r in rows}

    @translated
    async def delivery_failed(
        self,
        delivery_id: int,
        owner: str,
        *,
        code: int | None,
        error: str,
        started: datetime,
        max_attempts: int,
        delay_seconds: float,
        capture: tuple[dict[str, str] | None, str | None, str | None] = (None, None, None),
    ) -> tuple[str, int] | None:
        """Record a failed attempt; returns (new status, attempts) or None if not held.

        `capture`: the request headers and body as sent, and an excerpt of the answer.
        """
        row = await self.pool.fetchrow(
            Q["delivery_failed"],
            delivery_id,
            owner,
            code,
            error[:1000],
            started,
            max_attempts,
            delay_seconds,
            *capture,
        )
        return (row["status"], row["attempts"]) if row else None

    @translated
    async def hasten_deliveries(self, urls: Sequence[str]) -> int:
        """Deliveries to `urls` waiting out a backoff become due now; returns how many."""
        return len(await self.pool.fetch(Q["hasten_deliveries"], list(urls)))

    @translated
    async def release_deliveries(self, owner: str, ids: Sequence[int]) -> int:
        """Give held deliveries back without counting an attempt."""
        if not ids:
            return 0
        return len(await self.pool.fetch(Q["release_deliveries"], list(ids), owner))

    @translated
    async def reap_deliveries(self, limit: int) -> int:
        """Deliveries whose worker died mid-send go back to PENDING."""
        return len(await self.pool.fetch(Q["reap_expired_deliveries"], limit))

    # --- the merchant's view ---

    @translated
    async def dead_deliveries(
        self, mid: str, mode: str, after_id: int, limit: int
    ) -> list[DeliveryRecord]:
        """Merchant `mid`'s DEAD deliveries in `mode` after `after_id`, oldest first."""
        rows = await self.pool.fetch(Q["list_dead_deliveries"], after_id, limit, mid, mode)
        return [DeliveryRecord(**dict(r), status="DEAD") for r in rows]

    @translated
    async def redeliver(self, delivery_id: int, mid: str, mode: str) -> bool:
        """DEAD -> PENDING with a fresh attempt budget, and wake the senders."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["redeliver_dead"], delivery_id, mid, mode)
            if row:
                await conn.execute(Q["notify_webhooks"])
        return row is not None

    @translated
    async def deliveries_of(
        self, payment_id: int, after_id: int = 0, limit: int = 100
    ) -> list[DeliveryRecord]:
        """The deliveries of one payment after `after_id`, oldest first, at most `limit`."""
        rows = await self.pool.fetch(Q["deliveries_of_payment"], payment_id, after_id, limit)
        return [DeliveryRecord(**dict(r)) for r in rows]

    @translated
    async def enqueue_resend(
        self, tid: str, mid: str, mode: str, status: Status, *, per_window: int, window: float
    ) -> int | None:
        """Queue the webhook of a final payment again; None unless it is final with `status`.

        Raises ResendLimited when the payment had `per_window` deliveries in `window` seconds.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["lock_payment"], tid, mid, mode)
            row = await conn.fetchrow(
                Q["enqueue_resend"], tid, status.value, mid, mode, per_window, window
            )
        if row is None:
            return None
        if row["limited"]:
            raise errors.ResendLimited(tid, window)
        return int(row["id"])
