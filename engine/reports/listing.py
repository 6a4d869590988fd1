"""The payments page (keyset pages, newest first), the lookup of a pasted reference, and the
export of every row a filter matches, as CSV chunks for a streamed response."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.models import HistoryItem
from engine.reports.query import PaymentQuery, check_limit, decode_cursor, encode_cursor
from engine.store.reports import ReportsStore, item

# Rows fetched from the server-side cursor at a time: large enough that round trips do not
# count, small enough that memory stays flat whatever the export's size.
EXPORT_BATCH = 5000

CSV_HEADER = (
    "kind",
    "tid",
    "refund_id",
    "order_id",
    "order_name",
    "customer_id",
    "amount",
    "currency",
    "status",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; next_cursor is None on the last page."""

    rows: list[HistoryItem]
    next_cursor: str | None


async def page(
    store: ReportsStore,
    mid: str,
    mode: str,
    query: PaymentQuery,
    after: str | None,
    limit: int,
    *,
    secret: str,
) -> Page:
    """The `limit` rows after cursor `after` (None: the newest), newest first.

    `secret` signs the cursors (the server's API key secret): a cursor is valid only for the
    (mid, mode) it was issued to; anything else is InvalidField('cursor').
    """
    check_limit(limit)
    position = None if after is None else decode_cursor(after, mid, mode, secret)
    # One row more than the page tells whether another page follows.
    rows = await store.page(query.params(mid, mode, position, limit + 1))
    shown = rows[:limit]
    more = len(rows) > limit
    return Page(shown, encode_cursor(shown[-1].key, mid, mode, secret) if more else None)


async def find_exact(store: ReportsStore, mid: str, mode: str, text: str) -> str | None:
    """The tid of the merchant's payment (in `mode`) whose tid or order id is exactly `text`."""
    text = text.strip()
    if not text or len(text) > 200 or "\x00" in text:
        return None
    return await store.find_exact(mid, mode, text)


async def export_batches(
    store: ReportsStore, mid: str, mode: str, query: PaymentQuery, *, batch: int = EXPORT_BATCH
) -> AsyncIterator[list[HistoryItem]]:
    """Every row `query` matches, in the page order, from one snapshot, `batch` at a time."""
    async for rows in store.stream(query.params(mid, mode, None, None), batch):
        yield [item(r) for r in rows]


async def export_rows(
    store: ReportsStore, mid: str, mode: str, query: PaymentQuery, *, batch: int = EXPORT_BATCH
) -> AsyncIterator[HistoryItem]:
    """Every row `query` matches, in the page order, from one snapshot (not paged)."""
    async for rows in export_batches(store, mid, mode, query, batch=batch):
        for row in rows:
            yield row


def utc_iso(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, microseconds kept: 2026-01-31T09:00:00.123456Z."""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _line(i: HistoryItem) -> tuple[object, ...]:
    return (
        i.kind.value,
        i.tid,
        i.refund_id or "",
        i.order_id,
        i.order_name or "",
        i.user_public_id,
        i.amount,
        i.currency,
        i.status,
        utc_iso(i.created_at),
    )


def _record_line(r: Mapping[str, Any]) -> tuple[object, ...]:
    # The same columns as _line, from a payment_page record (the export's fast path).
    return (
        r["kind"],
        r["tid"],
        r["refund_id"] or "",
        r["order_id"],
        r["order_name"] or "",
        r["user_public_id"],
        r["amount"],
        r["currency"],
        r["status"],
        utc_iso(r["created_at"]),
    )


async def _csv(batches: AsyncIterable[Sequence[Any]], line: Any) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue().encode()
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(map(line, rows))
        yield buffer.getvalue().encode()


def csv_chunks(batches: AsyncIterable[list[HistoryItem]]) -> AsyncIterator[bytes]:
    """The CSV (RFC 4180, UTF-8, CRLF) of `batches` (as export_batches yields them): the
    header first, then one encoded chunk per batch.

    Money is the integer amount in minor units with its currency; times are ISO 8601 UTC.
    Values are written as stored (no spreadsheet-formula escaping), so the file equals the
    listing.
    """
    return _csv(batches, _line)


def export_csv(
    store: ReportsStore, mid: str, mode: str, query: PaymentQuery, *, batch: int = EXPORT_BATCH
) -> AsyncIterator[bytes]:
    """The CSV of every row `query` matches (as csv_chunks writes it), chunk by chunk, for a
    streamed response; straight from the records, without building a HistoryItem each."""
    return _csv(store.stream(query.params(mid, mode, None, None), batch), _record_line)
