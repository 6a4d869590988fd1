"""The one door to the database: named queries in, typed models out, driver errors translated."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from engine import errors
from engine.merchants import keys
from engine.merchants.keys import IssuedKey
from engine.models import (
    ApiKeyInfo,
    AuthKey,
    Claimed,
    ClaimedRefund,
    Delivery,
    DeliveryRecord,
    Endpoint,
    Merchant,
    NewPayment,
    Outcome,
    Payment,
    PaymentEvent,
    Refund,
    RefundOutcome,
    RefundStatus,
    Requeue,
    Settled,
    Status,
)
from engine.store import db
from engine.store.base import translated
from engine.store.queries import QUERIES as Q


def _requeue_columns(items: Sequence[Requeue]) -> tuple[list[Any], ...]:
    """The unnest arrays of requeue_batch and requeue_refunds: ids, statuses, delays, ..."""
    return (
        [i.id for i in items],
        [i.status for i in items],
        [i.delay for i in items],
        [i.unknown for i in items],
        [i.reason for i in items],
    )


class RefundKeyTaken(Exception):
    """A concurrent request made a refund with this idempotency key first."""


def _refund(r: Any) -> Refund:
    values = {k: v for k, v in dict(r).items() if k in _REFUND_FIELDS}
    values["status"] = RefundStatus(values["status"])
    return Refund(**values)


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


class TidCollision(Exception):
    """The random transaction id was taken already; draw another."""


@dataclasses.dataclass(frozen=True, slots=True)
class NewRow:
    """One payment to insert, with the ids the intake drew for it."""

    new: NewPayment
    public_id: str
    tid: str
    default_webhook_url: str


_PAYMENT_FIELDS = frozenset(f.name for f in dataclasses.fields(Payment))
_REFUND_FIELDS = frozenset(f.name for f in dataclasses.fields(Refund))


def _payment(r: asyncpg.Record) -> Payment:
    # Only the model's fields: a migration that adds a column must not break reads.
    values = {k: v for k, v in r.items() if k in _PAYMENT_FIELDS}
    values["status"] = Status(values["status"])
    return Payment(**values)


class Repository:
    """Runs the engine's named queries on a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- intake ---

    @translated
    async def insert_payment(
        self, new: NewPayment, *, public_id: str, tid: str, default_webhook_url: str
    ) -> Payment | None:
        """Store a new PENDING payment; None if the merchant already has one for this order."""
        try:
            row = await self.pool.fetchrow(
                Q["insert_payment"],
                public_id,
                tid,
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
                default_webhook_url,
                new.mode,
                new.endpoint_id,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "payment_processes_tid_key":
                raise TidCollision(tid) from exc
            raise
        return _payment(row) if row else None

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
        return [_payment(r) for r in got]

    @translated
    async def payment_by_order(self, mid: str, order_id: str, mode: str) -> Payment | None:
        """The payment a merchant has for an order in `mode`, if any."""
        row = await self.pool.fetchrow(Q["get_payment_by_order"], mid, order_id, mode)
        return _payment(row) if row else None

    @translated
    async def payment_by_tid(self, tid: str, mid: str, mode: str) -> Payment | None:
        """Merchant `mid`'s payment in `mode` with this transaction id, if it has one."""
        row = await self.pool.fetchrow(Q["get_payment_by_tid"], tid, mid, mode)
        return _payment(row) if row else None

    # --- payment engine ---

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
        rows = await self.pool.fetch(
            Q["settle_batch"],
            [o.id for o in outcomes],
            [o.status.value for o in outcomes],
            [o.approval_no for o in outcomes],
            [o.fail_reason for o in outcomes],
            owner,
        )
        return [Settled(id=r["id"], tid=r["tid"], status=Status(r["status"])) for r in rows]

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
        rows = await self.pool.fetch(
            Q["requeue_batch"],
            *_requeue_columns(items),
            owner,
        )
        return [Settled(id=r["id"], tid=r["tid"], status=Status(r["status"])) for r in rows]

    @translated
    async def unresolved(self, mid: str, mode: str, after_id: int, limit: int) -> list[Payment]:
        """Merchant `mid`'s UNRESOLVED payments in `mode` after `after_id`, oldest first."""
        rows = await self.pool.fetch(Q["list_unresolved"], after_id, limit, mid, mode)
        return [_payment(r) for r in rows]

    @translated
    async def reap_payments(self, limit: int) -> list[tuple[str, str | None]]:
        """Expired PROCESSING leases back to PENDING; returns (tid, old owner)."""
        rows = await self.pool.fetch(Q["reap_expired_payments"], limit)
        return [(r["tid"], r["lease_owner"]) for r in rows]

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
        row = await self.pool.fetchrow(
            Q["settle_manual"], tid, status.value, approval_no, fail_reason, mid, actor
        )
        return Settled(id=row["id"], tid=row["tid"], status=Status(row["status"])) if row else None

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

    # --- webhooks ---

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

    # --- webhook endpoints (each a merchant's, in one mode, with its signing secrets) ---

    @translated
    async def endpoint_secrets(self, deliveries: Sequence[Delivery]) -> dict[int, list[str]]:
        """endpoint id -> its active secrets (newest first), for deliveries naming an endpoint.

        An endpoint counts only if it is the delivery's merchant's, in its mode, and active.
        """
        named = [d for d in deliveries if d.endpoint_id is not None]
        if not named:
            return {}
        found: dict[int, list[str]] = {}
        rows = await self.pool.fetch(
            Q["endpoint_secrets"],
            [d.endpoint_id for d in named],
            [d.mid for d in named],
            [d.mode for d in named],
        )
        for r in rows:
            found.setdefault(r["endpoint_id"], []).append(r["secret"])
        return found

    @translated
    async def secrets_of_endpoint(self, mid: str, mode: str, endpoint_id: int) -> list[str]:
        """The active secrets of merchant `mid`'s endpoint in `mode`, newest first."""
        rows = await self.pool.fetch(Q["endpoint_secrets"], [endpoint_id], [mid], [mode])
        return [r["secret"] for r in rows]

    @translated
    async def add_endpoint(
        self,
        mid: str,
        mode: str,
        url: str,
        secret: str,
        *,
        description: str | None = None,
        max_endpoints: int = 1_000_000,
    ) -> Endpoint | None:
        """Register `url` for merchant `mid` in `mode` with its first secret.

        None when the merchant has `max_endpoints` active ones already; EndpointExists when the
        url is registered already.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(Q["lock_merchant"], mid)
                row = await conn.fetchrow(
                    Q["insert_endpoint"], mid, mode, url, description, secret, max_endpoints
                )
        except asyncpg.UniqueViolationError as exc:
            raise errors.EndpointExists(url) from exc
        return Endpoint(**dict(row)) if row else None

    @translated
    async def endpoints(self, mid: str, mode: str) -> list[Endpoint]:
        """Merchant `mid`'s active endpoints in `mode`, oldest first."""
        return [Endpoint(**dict(r)) for r in await self.pool.fetch(Q["list_endpoints"], mid, mode)]

    @translated
    async def endpoint(self, mid: str, mode: str, endpoint_id: int) -> Endpoint | None:
        """One active endpoint of merchant `mid` in `mode`."""
        row = await self.pool.fetchrow(Q["get_endpoint"], mid, mode, endpoint_id)
        return Endpoint(**dict(row)) if row else None

    @translated
    async def endpoint_by_url(self, mid: str, mode: str, url: str) -> int | None:
        """The id of merchant `mid`'s active endpoint in `mode` at exactly `url`, if any."""
        found = await self.pool.fetchval(Q["endpoint_by_url"], mid, mode, url)
        return int(found) if found is not None else None

    @translated
    async def roll_endpoint(
        self, mid: str, mode: str, endpoint_id: int, secret: str, grace_seconds: float
    ) -> bool:
        """Add `secret`; the endpoint's other secrets expire in `grace_seconds`.

        False (and nothing changed) if the endpoint is not the merchant's or not active.
        """
        row = await self.pool.fetchrow(
            Q["roll_endpoint_secret"], mid, mode, endpoint_id, secret, grace_seconds
        )
        return row is not None

    @translated
    async def delete_endpoint(self, mid: str, mode: str, endpoint_id: int) -> Endpoint | None:
        """The endpoint receives nothing more; None if it was not the merchant's or active."""
        row = await self.pool.fetchrow(Q["delete_endpoint"], mid, mode, endpoint_id)
        return Endpoint(**dict(row)) if row else None

    # --- merchants and API keys ---

    @translated
    async def create_merchant(self, mid: str, name: str) -> Merchant | None:
        """Create a merchant; None if the mid is taken."""
        row = await self.pool.fetchrow(Q["create_merchant"], mid, name)
        return Merchant(**dict(row)) if row else None

    @translated
    async def merchant(self, mid: str) -> Merchant | None:
        """A merchant by mid."""
        row = await self.pool.fetchrow(Q["get_merchant"], mid)
        return Merchant(**dict(row)) if row else None

    async def _insert_key(
        self,
        conn: asyncpg.Connection,
        merchant_id: int,
        mode: str,
        secret: str,
        expires_at: datetime | None,
        max_keys: int,
    ) -> IssuedKey:
        for _ in range(3):  # a collision of 256 random bits will not happen; the constraint says so
            key = keys.new_key("test" if mode == "test" else "live")
            try:
                # A savepoint: a refused insert must not abort the caller's transaction.
                async with conn.transaction():
                    row = await conn.fetchrow(
                        Q["insert_api_key"],
                        merchant_id,
                        mode,
                        keys.display_prefix(key),
                        keys.key_hash(secret, key),
                        expires_at,
                        max_keys,
                    )
            except asyncpg.UniqueViolationError:
                continue
            if row is None:
                raise errors.TooMany("API keys", max_keys)
            return IssuedKey(
                id=row["id"],
                key=key,
                mode=row["mode"],
                prefix=row["prefix"],
                created_at=row["created_at"],
                expires_at=row["expires_at"],
            )
        raise RuntimeError("could not issue a unique API key")

    @translated
    async def issue_key(
        self,
        mid: str,
        mode: str,
        secret: str,
        expires_at: datetime | None = None,
        *,
        max_keys: int = 1_000_000,
    ) -> IssuedKey:
        """A new key for merchant `mid` (which must exist); TooMany past `max_keys` of a mode."""
        async with self.pool.acquire() as conn, conn.transaction():
            merchant_id = await conn.fetchval(Q["lock_merchant"], mid)
            if merchant_id is None:
                raise errors.MerchantNotFound(mid)
            return await self._insert_key(conn, merchant_id, mode, secret, expires_at, max_keys)

    @translated
    async def authenticate(self, hashed: bytes) -> AuthKey | None:
        """The key with this hash, if any (active or not), and its merchant."""
        row = await self.pool.fetchrow(Q["authenticate_key"], hashed)
        return AuthKey(**dict(row)) if row else None

    @translated
    async def api_keys(self, mid: str, mode: str) -> list[ApiKeyInfo]:
        """Every key of a merchant in `mode`, newest first."""
        rows = await self.pool.fetch(Q["list_api_keys"], mid, mode)
        return [ApiKeyInfo(**dict(r)) for r in rows]

    @translated
    async def roll_key(
        self,
        mid: str,
        mode: str,
        key_id: int,
        grace_seconds: float,
        secret: str,
        *,
        max_keys: int = 1_000_000,
    ) -> tuple[IssuedKey, ApiKeyInfo] | None:
        """A new key now; the old one keeps working `grace_seconds` more. None if not active.

        The old key counts against `max_keys` until its grace ends: a roll may go one over.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            merchant_id = await conn.fetchval(Q["lock_merchant"], mid)
            old = await conn.fetchrow(Q["expire_api_key"], mid, key_id, grace_seconds, mode)
            if old is None:
                return None
            new = await self._insert_key(conn, merchant_id, old["mode"], secret, None, max_keys + 1)
            return new, ApiKeyInfo(**dict(old))

    @translated
    async def revoke_key(self, mid: str, mode: str, key_id: int) -> ApiKeyInfo | None:
        """The key stops working now; None if it is not this merchant's or already revoked."""
        row = await self.pool.fetchrow(Q["revoke_api_key"], mid, key_id, mode)
        return ApiKeyInfo(**dict(row)) if row else None

    @translated
    async def next_node_id(self) -> int:
        """A Snowflake node id for this process."""
        return int(await self.pool.fetchval(Q["next_node_id"]))

    # --- cancel and refunds ---

    @translated
    async def cancel(self, tid: str, mid: str, mode: str, actor: str) -> Payment | None:
        """PENDING -> CANCELED (compare-and-set); None if it was not cancelable."""
        row = await self.pool.fetchrow(Q["cancel_payment"], tid, mid, actor, mode)
        return _payment(row) if row else None

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
        rows = await self.pool.fetch(
            Q["settle_refunds"],
            [o.id for o in outcomes],
            [o.status.value for o in outcomes],
            [o.refund_no for o in outcomes],
            [o.fail_reason for o in outcomes],
            owner,
        )
        return [r["public_id"] for r in rows]

    @translated
    async def requeue_refunds(self, owner: str, items: Sequence[Requeue]) -> int:
        """Put held refunds without an outcome back (pending or unresolved)."""
        if not items:
            return 0
        rows = await self.pool.fetch(
            Q["requeue_refunds"],
            *_requeue_columns(items),
            owner,
        )
        return len(rows)

    @translated
    async def reap_refunds(self, limit: int) -> list[tuple[str, str | None]]:
        """Expired refund leases back to REFUND_PENDING; returns (refund id, old owner)."""
        rows = await self.pool.fetch(Q["reap_expired_refunds"], limit)
        return [(r["public_id"], r["lease_owner"]) for r in rows]

    @translated
    async def release_refunds(self, owner: str, ids: Sequence[int], *, unknown: bool) -> int:
        """Give held refunds back now."""
        if not ids:
            return 0
        return len(await self.pool.fetch(Q["release_refunds"], list(ids), owner, unknown))

    # --- history ---

    @translated
    async def payment_events(self, payment_id: int) -> list[PaymentEvent]:
        """Every state change of one payment and of its refunds, oldest first."""
        rows = await self.pool.fetch(Q["history_payment_events"], payment_id)
        return [PaymentEvent(**dict(r)) for r in rows]

    # --- metrics ---

    @translated
    async def metrics_snapshot(self) -> dict[str, Any]:
        """Counts of active states and oldest ages, for /metrics."""
        row = await self.pool.fetchrow(Q["metrics_snapshot"])
        assert row is not None
        return {
            k: (float(v) if k.startswith("oldest") and v is not None else v) for k, v in row.items()
        }

    # --- provider callbacks ---

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
        row = await self.pool.fetchrow(
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
        )
        return Settled(id=row["id"], tid=row["tid"], status=Status(row["status"])) if row else None

    @translated
    async def provider_payment(
        self, tid: str, provider: str, modes: Sequence[str]
    ) -> Payment | None:
        """A provider's payment by tid in one of `modes`, whoever its merchant."""
        row = await self.pool.fetchrow(Q["provider_payment"], tid, provider, list(modes))
        return _payment(row) if row else None
