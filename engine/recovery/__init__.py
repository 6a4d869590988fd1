"""The operators' console: recovery, merchants, search and the audit log, across merchants.

The caller is an operator (never a merchant's session); `operator` is the person's name and
is recorded as "operator:<name>" in the payment's history and in the audit log. Every action
that changes something writes its audit row in the same transaction as the change.
store = engine.store.recovery.RecoveryStore(pool); repo = engine.store.repository.Repository.

- `await unresolved(store, *, after_id=0, limit=100, parked=None, provider=None, mode=None)
  -> list[Stuck]`: UNRESOLVED payments, oldest first (keyset by id). parked=True: the ones
  waiting for a person after a provider refused us (Stuck.credentials_refused for 401/403).
- `await inquire_now(store, tid, operator, reason=None) -> str`: a PENDING or UNRESOLVED
  payment becomes due now (the next pass inquires it); returns its status.
- `await release_parked(store, operator, *, provider=None, mode=None, tids=None,
  reason=None) -> list[str]`: parked payments back to the queue (after credentials are
  fixed); returns the tids released.
- `await resolve(store, tid, status, reason, operator, *, approval_no=None,
  fail_reason=None) -> Status`: SUCCESS or FAILED by hand, reason required; compare-and-set
  from UNRESOLVED (or PENDING with an unknown outcome); queues the webhook like any settle.
  The loser of a race gets OperatorActionRefused (409) and changes nothing.
- `await search_payments(store, text, limit=50) -> list[Found]`: by tid, order id or mid.
- `await list_merchants(store, *, after_id=0, limit=100, search=None) -> list[MerchantRow]`
- `await create_merchant(store, repo, key_secret, mid, name, operator, *, mode='test',
  webhook_url=None, reason=None) -> dict`: the merchant and its first key (apiKey, shown
  once), as `python -m engine.commands.merchants create` makes them.
- `await suspend(store, mid, operator, reason, *, suspended=True) -> MerchantRow`: a
  suspended merchant's keys get 401 (reason required to suspend; suspended=False lifts it).
  Clear the web process's key cache (api.auth.CACHE) after it, or wait out its TTL.
- `await audit_log(store, after=None, limit=50, *, target=None) -> AuditPage(rows,
  next_cursor)`: newest first.

Errors: InvalidField(field) for bad input (422), OperatorActionRefused (409),
PaymentNotFound / MerchantNotFound (404).
"""

from engine.recovery.actions import (
    Found,
    Stuck,
    inquire_now,
    release_parked,
    resolve,
    search_payments,
    unresolved,
)
from engine.recovery.audit import AuditEntry, AuditPage, audit_log
from engine.recovery.merchants import MerchantRow, create_merchant, list_merchants, suspend

__all__ = [
    "AuditEntry",
    "AuditPage",
    "Found",
    "MerchantRow",
    "Stuck",
    "audit_log",
    "create_merchant",
    "inquire_now",
    "list_merchants",
    "release_parked",
    "resolve",
    "search_payments",
    "suspend",
    "unresolved",
]
