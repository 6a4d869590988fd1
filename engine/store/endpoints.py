"""The webhook endpoints' store: each a merchant's, in one mode, with its signing secrets.

A secret is only ever found through its endpoint, checked against the delivery's merchant and
mode: never by url.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from engine import errors
from engine.models import Delivery, Endpoint
from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("endpoints")
# The merchant's row lock serializes the capped inserts of keys and endpoints alike.
LOCK_MERCHANT = load("merchants")["lock_merchant"]


class Endpoints(Store):
    """Merchants' webhook endpoints and their secrets."""

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
                await conn.execute(LOCK_MERCHANT, mid)
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
