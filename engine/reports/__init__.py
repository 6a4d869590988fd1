"""A merchant's back-office reads; every function is scoped by (mid, mode).

Interface (store = engine.store.reports.ReportsStore(pool)):

- `PaymentQuery(kinds, statuses, created_from, created_to, amount_min, amount_max, currency,
  search)`: a frozen, checked filter (query.py). kinds are payment | cancel | refund; times
  aware and half-open; amounts integers in minor units. A bad value raises
  errors.InvalidField(field, message) naming the attribute (the API answers 422
  problem+json with `field`). `PaymentQuery()` lists everything.
- `await page(store, mid, mode, query, after, limit, *, secret) -> Page(rows, next_cursor)`:
  newest first, keyset pages; `after` is the previous page's next_cursor (opaque, signed with
  `secret`, the server's api_key_secret, valid for that (mid, mode) only). limit 1..200.
  Rows are engine.models.HistoryItem (kind, tid, refund_id, order_id, order_name,
  user_public_id, amount, currency, status, created_at). GET /api/payments uses this.
- `await export_csv(store, mid, mode, query, write)`: writes the CSV of every matching row
  to `write` (an async callable taking bytes, a streamed response's), chunk by chunk from one
  snapshot, header first (CSV_HEADER names the columns; amounts in minor units with the
  currency, never quoted; every other cell quoted; times ISO 8601 UTC). PostgreSQL writes the
  lines (COPY of the page's own query); a text cell a spreadsheet would run as a formula
  (beginning with =, +, -, @, tab, CR) gets a ' in front (`cell`). `export_batches(...)`
  lists the same rows as HistoryItems (server-side cursor, one snapshot), `export_rows(...)`
  one by one, and `csv_chunks(batches)` writes them as the same CSV bytes (the reference).
- `await find_exact(store, mid, mode, text) -> str | None`: the tid of the payment whose
  tid or order id is exactly `text` (a pasted reference opens the payment).
- `await timeline(store, mid, mode, tid) -> list[Entry]`: state changes, cancel, refunds
  and every webhook attempt (headers and body as sent, response code and excerpt), oldest
  first, each with its actor and actor_kind (engine, api_key, user, operator).
  PaymentNotFound if it is not this merchant's payment in this mode.
- `await overview(store, mid, mode, range_, tz) -> Overview`: range_ 'today' (hourly),
  '7d' or '30d' (daily) in IANA zone tz; per bucket: count, amount and succeeded_amount per
  currency, succeeded/failed/canceled/open, success_rate, latency_p50_ms/p95_ms,
  failures {reason: n}.
"""

from engine.reports.listing import (
    CSV_HEADER,
    Page,
    cell,
    csv_chunks,
    export_batches,
    export_csv,
    export_rows,
    find_exact,
    page,
    utc_iso,
)
from engine.reports.overview import Bucket, Overview, overview
from engine.reports.query import MAX_LIMIT, PaymentQuery
from engine.reports.timeline import Entry, actor_kind, timeline

__all__ = [
    "CSV_HEADER",
    "MAX_LIMIT",
    "Bucket",
    "Entry",
    "Overview",
    "Page",
    "PaymentQuery",
    "actor_kind",
    "cell",
    "csv_chunks",
    "export_batches",
    "export_csv",
    "export_rows",
    "find_exact",
    "overview",
    "page",
    "timeline",
    "utc_iso",
]
