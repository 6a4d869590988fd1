"""What only the back office asks of keys and webhooks: key names, the delivery log, resends."""

from __future__ import annotations

from engine.models import DeliveryRecord
from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("backoffice")

# The states a person filters the delivery log by.
DELIVERY_STATES = ("delivered", "failed", "dead", "pending")


class BackofficeStore(Store):
    """Key names, the delivery log and resends of merchant-scoped webhooks."""

    @translated
    async def name_key(self, mid: str, mode: str, key_id: int, name: str) -> bool:
        """Give a key a name; False if it is not the merchant's key of that mode."""
        return await self.pool.fetchval(Q["set_key_name"], mid, mode, key_id, name) is not None

    @translated
    async def key_names(self, mid: str, mode: str) -> dict[int, str]:
        """key id -> name, for the named keys of a merchant in a mode."""
        return {r["id"]: r["name"] for r in await self.pool.fetch(Q["key_names"], mid, mode)}

    @translated
    async def deliveries(
        self,
        mid: str,
        mode: str,
        *,
        state: str | None,
        event_type: str | None,
        event_id: str | None,
        before: int,
        limit: int,
    ) -> list[DeliveryRecord]:
        """The merchant's deliveries in `mode` the filter matches, newest first."""
        rows = await self.pool.fetch(
            Q["delivery_log"], mid, mode, before, limit, state, event_type, event_id
        )
        return [DeliveryRecord(**dict(r)) for r in rows]

    @translated
    async def resend(
        self,
        mid: str,
        mode: str,
        *,
        delivery_id: int = 0,
        state: str | None = None,
        event_type: str | None = None,
        event_id: str | None = None,
        limit: int,
    ) -> int:
        """Send again every delivery the filter matches (or one, by id); returns how many."""
        return int(
            await self.pool.fetchval(
                Q["resend_deliveries"], mid, mode, delivery_id, state, event_type, event_id, limit
            )
        )
