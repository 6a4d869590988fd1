"""Payments waiting for the customer at the provider's page (REQUIRES_ACTION).

The provider's callback settles them (api/public/callbacks.py). This pass is for when it does
not come: each due payment is inquired about (the same `inquire` the unknown-outcome
machinery uses), on a schedule, and settled by compare-and-set from what the provider says.
Once its time is up and the provider still has no decision, it ends FAILED with
ACTION_EXPIRED: the customer walked away and nothing was charged. A provider we cannot reach
never expires a payment (the customer may have paid); it is inquired again next time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import structlog

from engine import metrics
from engine.models import Claimed, Outcome, Status
from engine.providers.protocol import Provider, ProviderRejected, ProviderUnavailable, registry_key
from engine.store.repository import Repository

log = structlog.get_logger()

EXPIRED = "ACTION_EXPIRED"


class ActionPass(NamedTuple):
    """What one pass did: payments inquired, settled by the provider's answer, expired."""

    inquired: int
    settled: int
    expired: int


async def _inquire(providers: Mapping[str, Provider], c: Claimed) -> Outcome | None:
    """The provider's final answer for `c`, or None while it has none (or cannot say)."""
    provider = providers.get(registry_key(c.mode, c.provider))
    if provider is None:
        log.error("payment.action_no_provider", tid=c.tid, provider=c.provider, mode=c.mode)
        return None
    try:
        with metrics.provider_call(provider.name, "inquire") as timed:
            found = await provider.inquire(c)
            timed["result"] = "no_record" if found is None else found.status.value.lower()
    except (ProviderUnavailable, ProviderRejected) as exc:
        log.warning("payment.action_inquiry_failed", tid=c.tid, reason=exc.reason)
        raise
    if found is None or not found.status.is_final:
        return None
    return found


async def run_once(
    repo: Repository,
    providers: Mapping[str, Provider],
    *,
    actor: str,
    batch_size: int,
    lease_seconds: float,
) -> ActionPass:
    """Inquire about due REQUIRES_ACTION payments; settle or expire them by compare-and-set."""
    due = await repo.payments.claim_actions(batch_size, lease_seconds)
    if not due:
        return ActionPass(0, 0, 0)
    final: list[Outcome] = []
    txn_ids: list[str | None] = []
    for c, expired in due:
        try:
            found = await _inquire(providers, c)
        except (ProviderUnavailable, ProviderRejected):
            continue  # unknown: neither settled nor expired; due again after the lease
        if found is not None:
            final.append(found)
            txn_ids.append(found.approval_no if found.status is Status.SUCCESS else None)
        elif expired:
            final.append(Outcome(c.id, Status.FAILED, fail_reason=EXPIRED))
            txn_ids.append(None)
    settled = await repo.payments.settle_actions(final, actor, txn_ids)
    tids = {c.id: c.tid for c, _ in due}
    provider_of = {c.id: c.provider for c, _ in due}
    n_expired = 0
    by_id = {o.id: o for o in final}
    for s in settled:
        how = by_id[s.id].fail_reason == EXPIRED
        n_expired += how
        metrics.PAYMENTS_SETTLED.labels(s.status.value, provider_of[s.id]).inc()
        log.info(
            "payment.settled",
            tid=s.tid,
            status=s.status.value,
            by="action_expiry" if how else "action_inquiry",
        )
    for lost in set(by_id) - {s.id for s in settled}:
        # A callback settled it between our inquiry and our write: it won.
        log.info("payment.settle_lost_race", tid=tids[lost], by="action_inquiry")
    return ActionPass(len(due), len(settled) - n_expired, n_expired)
