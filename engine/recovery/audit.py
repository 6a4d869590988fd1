"""The operators' audit log: append-only (the database refuses UPDATE, DELETE, TRUNCATE),
read newest first with keyset pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine import errors
from engine.recovery.actions import check_limit
from engine.store.recovery import RecoveryStore


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action: who, what, to what, why, and what it found."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditPage:
    """A page of the log; next_cursor is None on the last page."""

    rows: list[AuditEntry]
    next_cursor: str | None


async def audit_log(
    store: RecoveryStore,
    after: str | None = None,
    limit: int = 50,
    *,
    target: str | None = None,
) -> AuditPage:
    """The log newest first, `limit` entries after cursor `after`; `target` narrows it to one
    object ("payment:<tid>", "merchant:<mid>")."""
    before: int | None = None
    if after is not None:
        if not after.isdigit() or len(after) > 19:
            raise errors.InvalidField("cursor", "is not a cursor this service returned")
        before = int(after)
    rows = await store.audit_log(before, check_limit(limit) + 1, target)
    shown = [AuditEntry(**dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return AuditPage(shown, str(shown[-1].id) if more else None)
