"""The merchants' store: merchants and their API keys (only a key's hash is stored)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from engine import errors
from engine.merchants import keys
from engine.merchants.keys import IssuedKey
from engine.models import ApiKeyInfo, AuthKey, Merchant
from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("merchants")


class Merchants(Store):
    """Merchants, and the keys they call the API with."""

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
        kind: keys.Kind = "secret",
    ) -> IssuedKey:
        for _ in range(3):  # a collision of 256 random bits will not happen; the constraint says so
            key = keys.new_key("test" if mode == "test" else "live", kind)
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
                        kind,
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
                kind=row["kind"],
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
        kind: keys.Kind = "secret",
    ) -> IssuedKey:
        """A new key for merchant `mid` (which must exist); TooMany past `max_keys` of a mode
        and kind."""
        async with self.pool.acquire() as conn, conn.transaction():
            merchant_id = await conn.fetchval(Q["lock_merchant"], mid)
            if merchant_id is None:
                raise errors.MerchantNotFound(mid)
            return await self._insert_key(
                conn, merchant_id, mode, secret, expires_at, max_keys, kind
            )

    @translated
    async def authenticate(self, hashed: bytes) -> AuthKey | None:
        """The key with this hash, if any (active or not), and its merchant."""
        row = await self.pool.fetchrow(Q["authenticate_key"], hashed)
        return AuthKey(**dict(row)) if row else None

    @translated
    async def api_keys(self, mid: str, mode: str) -> list[ApiKeyInfo]:
        """Every key of a merchant in `mode` (secret and publishable), newest first."""
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
            new = await self._insert_key(
                conn, merchant_id, old["mode"], secret, None, max_keys + 1, old["kind"]
            )
            return new, ApiKeyInfo(**dict(old))

    @translated
    async def revoke_key(self, mid: str, mode: str, key_id: int) -> ApiKeyInfo | None:
        """The key stops working now; None if it is not this merchant's or already revoked."""
        row = await self.pool.fetchrow(Q["revoke_api_key"], mid, key_id, mode)
        return ApiKeyInfo(**dict(row)) if row else None
