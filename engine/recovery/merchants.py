"""Merchants as operators manage them: list, create (with a first key), suspend, unsuspend.

first_credentials is shared with the operators' CLI (engine/commands/merchants.py). No
merchant is ever handed a shared secret: an endpoint's secret is drawn for it alone; without
an endpoint, webhooks go to the operator's default receiver, signed with the operator's
secret, which is not the merchant's to know.

A suspended merchant's API keys authenticate as nothing (401) until it is unsuspended; its
keys are kept, so lifting the suspension restores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from engine import errors
from engine.merchants.keys import Mode
from engine.recovery.actions import actor, check_limit, check_reason
from engine.store.recovery import RecoveryStore
from engine.store.repository import Repository
from engine.webhooks import signing

log = structlog.get_logger()


async def first_credentials(
    repo: Repository,
    key_secret: str,
    mid: str,
    name: str,
    mode: Mode,
    *,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """Issue the merchant's first key of `mode` (shown once) and its endpoint, if a url is given."""
    issued = await repo.merchants.issue_key(mid, mode, key_secret)
    created: dict[str, Any] = {
        "mid": mid,
        "name": name,
        "mode": mode,
        "apiKey": issued.key,
        "prefix": issued.prefix,
    }
    if webhook_url is not None:
        secret = signing.new_secret()
        endpoint = await repo.endpoints.add_endpoint(mid, mode, webhook_url, secret)
        assert endpoint is not None  # a new merchant has no endpoints to count
        created["webhookEndpoint"] = {"id": endpoint.id, "url": webhook_url, "secret": secret}
    return created


@dataclass(frozen=True, slots=True)
class MerchantRow:
    """A merchant as the console lists it."""

    id: int
    mid: str
    name: str
    created_at: datetime
    suspended_at: datetime | None
    active_keys: int

    @property
    def suspended(self) -> bool:
        """True while its keys authenticate as nothing."""
        return self.suspended_at is not None


async def list_merchants(
    store: RecoveryStore, *, after_id: int = 0, limit: int = 100, search: str | None = None
) -> list[MerchantRow]:
    """Merchants after id `after_id`, oldest first; `search` a prefix of the mid or name."""
    if search is not None and (not 1 <= len(search) <= 200 or "\x00" in search):
        raise errors.InvalidField("search", "must be 1 to 200 characters")
    rows = await store.merchants(after_id, check_limit(limit), search)
    return [MerchantRow(**dict(r)) for r in rows]


async def create_merchant(
    store: RecoveryStore,
    repo: Repository,
    key_secret: str,
    mid: str,
    name: str,
    operator: str,
    *,
    mode: Mode = "test",
    webhook_url: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A new merchant and its first key of `mode` (the key is in the answer, shown once).

    The merchant and its audit row commit together; the key is issued right after (as the
    CLI does). InvalidField('mid') if the mid is taken or malformed.
    """
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise errors.InvalidField("name", "must be 1 to 200 characters")
    who = actor(operator)
    row = await store.create_merchant(mid, name.strip(), who, check_reason(reason, required=False))
    if row is None:
        raise errors.InvalidField("mid", f"merchant {mid!r} exists already")
    created = await first_credentials(
        repo, key_secret, mid, name.strip(), mode, webhook_url=webhook_url
    )
    await store.record(
        who,
        "merchant.issue_key",
        f"merchant:{mid}",
        None,
        {
            "mode": mode,
            "prefix": created["prefix"],
        },
    )
    log.info("operator.merchant_created", mid=mid, operator=who)
    return created


async def suspend(
    store: RecoveryStore, mid: str, operator: str, reason: str, *, suspended: bool = True
) -> MerchantRow:
    """Suspend merchant `mid` (or lift it with suspended=False); `reason` required to suspend.

    OperatorActionRefused if it is already in that state; MerchantNotFound if none.
    Web processes that cache keys (api/auth.py) notice within their cache time.
    """
    who = actor(operator)
    why = check_reason(reason, required=suspended)
    row = await store.suspend_merchant(mid, suspended, who, why)
    if row is None:
        if not await store.merchant_exists(mid):
            raise errors.MerchantNotFound(mid)
        state = "suspended" if suspended else "not suspended"
        raise errors.OperatorActionRefused(f"merchant:{mid}", f"{mid} is {state} already")
    log.info("operator.merchant_suspended", mid=mid, suspended=suspended, operator=who)
    return MerchantRow(**dict(row))
