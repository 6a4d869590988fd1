"""The operators' console in the database: recovery actions, merchants, search, audit log.

Across merchants (the caller is an operator). Each action writes its operator_audit row in
the same statement as its change (recovery.sql); the domain side is engine/recovery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from engine import errors
from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("recovery")


class RecoveryStore(Store):
    """Runs recovery.sql's statements; returns records for engine/recovery to type."""

    @translated
    async def unresolved(
        self,
        after_id: int,
        limit: int,
        *,
        parked: bool | None = None,
        provider: str | None = None,
        mode: str | None = None,
    ) -> list[asyncpg.Record]:
        """UNRESOLVED payments after `after_id`, oldest first (parked ones only if `parked`)."""
        return list(await self.pool.fetch(Q["unresolved"], after_id, limit, parked, provider, mode))

    @translated
    async def inquire_now(self, tid: str, actor: str, reason: str | None) -> asyncpg.Record | None:
        """Make a PENDING or UNRESOLVED payment due now; None if it is neither."""
        row = await self.pool.fetchrow(Q["inquire_now"], tid, actor, reason)
        if row is not None:
            await self.pool.execute(Q["notify"], "payments_pending")
        return row

    @translated
    async def release_parked(
        self,
        provider: str | None,
        mode: str | None,
        tids: Sequence[str] | None,
        actor: str,
        reason: str | None,
    ) -> list[str]:
        """Parked payments back to the queue; returns their tids."""
        rows = await self.pool.fetch(
            Q["release_parked"], provider, mode, None if tids is None else list(tids), actor, reason
        )
        if rows:
            await self.pool.execute(Q["notify"], "payments_pending")
        return [r["tid"] for r in rows]

    @translated
    async def resolve(
        self,
        tid: str,
        status: str,
        approval_no: str | None,
        fail_reason: str | None,
        actor: str,
        reason: str,
    ) -> asyncpg.Record | None:
        """Settle an UNRESOLVED (or unknown PENDING) payment by hand; None if it was not."""
        row = await self.pool.fetchrow(
            Q["resolve"], tid, status, approval_no, fail_reason, actor, reason
        )
        if row is not None:
            await self.pool.execute(Q["notify"], "webhooks_pending")
        return row

    @translated
    async def payment_state(self, tid: str) -> str | None:
        """The status of payment `tid`, whoever's it is."""
        found = await self.pool.fetchval(Q["payment_state"], tid)
        return str(found) if found is not None else None

    @translated
    async def search_payments(self, text: str, limit: int) -> list[asyncpg.Record]:
        """Payments whose tid or order id is `text`, or whose merchant is `text`, newest first."""
        return list(await self.pool.fetch(Q["search_payments"], text, limit))

    @translated
    async def merchants(
        self, after_id: int, limit: int, prefix: str | None
    ) -> list[asyncpg.Record]:
        """Merchants after `after_id`, oldest first."""
        return list(await self.pool.fetch(Q["merchants"], after_id, limit, prefix))

    @translated
    async def create_merchant(
        self, mid: str, name: str, actor: str, reason: str | None
    ) -> asyncpg.Record | None:
        """A merchant and its audit row; None if the mid is taken."""
        try:
            return await self.pool.fetchrow(Q["create_merchant"], mid, name, actor, reason)
        except asyncpg.CheckViolationError:
            raise errors.InvalidField("mid", "must be 1 to 64 of A-Z a-z 0-9 _ . -") from None

    @translated
    async def suspend_merchant(
        self, mid: str, suspend: bool, actor: str, reason: str | None
    ) -> asyncpg.Record | None:
        """Suspend (or lift it); None if the merchant is not there or already so."""
        return await self.pool.fetchrow(Q["suspend_merchant"], mid, suspend, actor, reason)

    @translated
    async def merchant_exists(self, mid: str) -> bool:
        """Whether merchant `mid` exists."""
        return bool(await self.pool.fetchval(Q["merchant_exists"], mid))

    @translated
    async def record(
        self, actor: str, action: str, target: str, reason: str | None, detail: dict[str, Any]
    ) -> int:
        """Append one audit row; returns its id."""
        return int(await self.pool.fetchval(Q["record"], actor, action, target, reason, detail))

    @translated
    async def audit_log(
        self, before_id: int | None, limit: int, target: str | None
    ) -> list[asyncpg.Record]:
        """Audit rows below `before_id`, newest first."""
        return list(await self.pool.fetch(Q["audit_log"], before_id, limit, target))
