"""The history's store: each payment's timeline (read-only).

The listing of payments, cancels and refunds is engine/store/reports.py.
"""

from __future__ import annotations

from engine.models import PaymentEvent
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
