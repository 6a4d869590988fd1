"""A dataset written straight into the tables for the back-office tests, with its oracle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

BASE = datetime(2025, 3, 1, tzinfo=UTC)
SECRET = "reports-test-secret"

_PAYMENT = """
INSERT INTO payment_processes
    (public_id, tid, mid, order_id, user_public_id, amount, currency, status, approval_no,
     fail_reason, request_digest, webhook_url, requested_at, updated_at, order_name,
     canceled_at, last_actor, mode, processed_at, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'AP1', CASE WHEN $8 = 'FAILED' THEN 'DECLINED' END,
        'digest', 'http://127.0.0.1:9/hook', $9, $9, $10, $11, 'merchant:sk_test_x', $12,
        $9::timestamptz + interval '2 seconds', $13)
RETURNING id
"""

_REFUND = """
INSERT INTO refunds
    (public_id, payment_id, mid, amount, currency, idempotency_key, request_digest, status,
     requested_at, mode)
VALUES ($1, $2, $3, $4, $5, $1, 'digest', $6, $7, $8)
RETURNING id
"""


def at(minutes: int) -> datetime:
    """BASE plus some minutes."""
    return BASE + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Row:
    """What a listing should show for one row."""

    kind: str
    id: int
    tid: str
    refund_id: str | None
    order_id: str
    order_name: str | None
    customer: str
    amount: int
    currency: str
    status: str
    created_at: datetime

    @property
    def key(self) -> tuple[datetime, str, int]:
        """The listing's order (newest first when reversed)."""
        return (self.created_at, self.kind, self.id)


class Data:
    """Rows of several merchants and both modes; `rows[(mid, mode)]` what each should list."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.rows: dict[tuple[str, str], list[Row]] = {}
        self.n = 0
        self.payments: dict[str, tuple[int, Row, str]] = {}

    async def payment(
        self,
        mid: str,
        order_id: str,
        *,
        minute: int,
        mode: str = "test",
        amount: int = 1000,
        currency: str = "KRW",
        status: str = "SUCCESS",
        name: str | None = None,
        customer: str = "CUST_A",
        canceled_minute: int | None = None,
        parked: bool = False,
    ) -> str:
        """A payment (a cancel when CANCELED); returns its tid."""
        self.n += 1
        tid = f"REPT_20250301_{self.n:08d}"
        canceled = at(canceled_minute) if canceled_minute is not None else None
        due = datetime.max.replace(tzinfo=UTC) if parked else at(minute)
        pid = await self.pool.fetchval(
            _PAYMENT,
            f"rp{self.n:08d}",
            tid,
            mid,
            order_id,
            customer,
            amount,
            currency,
            status,
            at(minute),
            name,
            canceled,
            mode,
            due,
        )
        kind = "cancel" if status == "CANCELED" else "payment"
        created = (canceled or at(minute)) if kind == "cancel" else at(minute)
        row = Row(kind, pid, tid, None, order_id, name, customer, amount, currency, status, created)
        self.rows.setdefault((mid, mode), []).append(row)
        self.payments[tid] = (pid, row, mode)
        return tid

    async def refund(self, tid: str, *, minute: int, amount: int, status: str) -> str:
        """A refund of payment `tid`; returns its public id."""
        self.n += 1
        public_id = f"RF{self.n:08d}"
        pid, p, mode = self.payments[tid]
        mid = next(k[0] for k, v in self.rows.items() if p in v)
        rid = await self.pool.fetchval(
            _REFUND, public_id, pid, mid, amount, p.currency, status, at(minute), mode
        )
        self.rows[(mid, mode)].append(
            Row(
                "refund",
                rid,
                tid,
                public_id,
                p.order_id,
                p.order_name,
                p.customer,
                amount,
                p.currency,
                status,
                at(minute),
            )
        )
        return public_id

    def expected(self, mid: str, mode: str, keep: object = None) -> list[Row]:
        """The (mid, mode) rows `keep` accepts, newest first."""
        rows = [r for r in self.rows.get((mid, mode), []) if keep is None or keep(r)]  # type: ignore[operator]
        return sorted(rows, key=lambda r: r.key, reverse=True)


async def fill(pool: asyncpg.Pool, mid: str, other: str) -> Data:
    """A merchant's payments, cancels and refunds in test mode; look-alikes elsewhere."""
    d = Data(pool)
    await d.payment(mid, "ORD-1001", minute=1, amount=1000, name="Blue Shirt")
    await d.payment(mid, "ORD-1002", minute=2, amount=2500, status="FAILED", name="blue shoes")
    await d.payment(mid, "ORD-2001", minute=3, amount=4000, status="PENDING", currency="USD")
    p4 = await d.payment(
        mid, "ORD-2002", minute=4, amount=10000, status="PARTIALLY_REFUNDED", customer="CUST_C"
    )
    p5 = await d.payment(mid, "INV_77", minute=5, amount=7000, status="REFUNDED", currency="USD")
    await d.payment(mid, "ORD-3001", minute=7, status="CANCELED", canceled_minute=9, name="Cap")
    await d.payment(mid, "ORD-1003", minute=9, amount=8000, status="UNRESOLVED", name="Jeans")
    await d.payment(mid, "ORD-1004", minute=9, amount=9000, name="Socks", customer="CUST_D")
    await d.refund(p4, minute=10, amount=3000, status="REFUNDED")
    await d.refund(p5, minute=11, amount=7000, status="REFUNDED")
    await d.refund(p4, minute=12, amount=200, status="REFUND_FAILED")
    # The same orders in live mode, and at another merchant: never listed for (mid, test).
    await d.payment(mid, "ORD-1001", minute=1, mode="live", name="Blue Shirt")
    await d.payment(mid, "ORD-5005", minute=6, mode="live", status="FAILED")
    await d.payment(other, "ORD-1001", minute=5, name="Blue Shirt")
    o = await d.payment(other, "ORD-1010", minute=3, status="PARTIALLY_REFUNDED")
    await d.refund(o, minute=10, amount=100, status="REFUNDED")
    return d
