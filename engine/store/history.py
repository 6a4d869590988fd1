"""The history's store: each payment's timeline, and a merchant's listing of payments, cancels
and refunds (read-only)."""

from __future__ import annotations

from typing import Any

from engine.models import HistoryFilter, HistoryItem, HistoryKey, HistoryKind, PaymentEvent
from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("history")


class History(Store):
    """What happened to a merchant's payments, read back."""

    @translated
    async def payment_events(self, payment_id: int) -> list[PaymentEvent]:
        """Every state change of one payment and of its refunds, oldest first."""
        rows = await self.pool.fetch(Q["history_payment_events"], payment_id)
        return [PaymentEvent(**dict(r)) for r in rows]

    @translated
    async def page(
        self, mid: str, mode: str, filters: HistoryFilter, after: HistoryKey | None, limit: int
    ) -> list[HistoryItem]:
        """Merchant `mid`'s payments, cancels and refunds in `mode` after `after`, newest first."""
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(Q["history_custom_plans"])
            rows = await conn.fetch(
                Q["history_list"], *self.page_params(mid, mode, filters, after, limit)
            )
        return [HistoryItem(**{**dict(r), "kind": HistoryKind(r["kind"])}) for r in rows]

    @staticmethod
    def page_params(
        mid: str, mode: str, filters: HistoryFilter, after: HistoryKey | None, limit: int
    ) -> tuple[Any, ...]:
        """The history_list parameters for these arguments (tests EXPLAIN the query with them)."""
        return (
            mid,
            sorted(filters.kinds),
            None if filters.statuses is None else sorted(filters.statuses),
            filters.created_from,
            filters.created_to,
            filters.min_amount,
            filters.max_amount,
            filters.q,
            after.created_at if after else None,
            after.kind.value if after else "",
            after.id if after else 0,
            limit,
            mode,
        )
