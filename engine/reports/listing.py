"""The payments page (keyset pages, newest first), the lookup of a pasted reference, and the
export of every row a filter matches, as CSV chunks for a streamed response."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.models import HistoryItem
from engine.reports.query import PaymentQuery, check_limit, decode_cursor, encode_cursor
from engine.store.reports import CSV_COLUMNS, ReportsStore, item

# Rows export_batches fetches from its server-side cursor at a time: large enough that round
# trips do not count, small enough that memory stays flat whatever the export's size.
EXPORT_BATCH = 5000

CSV_HEADER = CSV_COLUMNS


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


# A first character that makes a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(text: str | None) -> str:
    """A text cell as the export writes it: a ' in front of one a spreadsheet would take for a
    formula (=HYPERLINK(...) becomes '=HYPERLINK(...)), None as empty. For the ids and the
    merchant's or customer's words; the amount stays a number, negative or not."""
    if not text:
        return ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _line(i: HistoryItem) -> tuple[object, ...]:
    return (
        i.kind.value,
        cell(i.tid),
        cell(i.refund_id),
        cell(i.order_id),
        cell(i.order_name),
        cell(i.user_public_id),
        i.amount,
        i.currency,
        i.status,
        utc_iso(i.created_at),
    )


def _writer(buffer: io.StringIO) -> Any:
    # Every cell quoted but the amount (a number): a quoted cell stays one cell whatever
    # separator the spreadsheet assumes (a ; inside a name cannot start a new cell).
    return csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)


def _header() -> bytes:
    buffer = io.StringIO()
    _writer(buffer).writerow(CSV_HEADER)
    return buffer.getvalue().encode()


HEADER = _header()


async def csv_chunks(batches: AsyncIterable[list[HistoryItem]]) -> AsyncIterator[bytes]:
    """The CSV of `batches` (as export_batches yields them), written here by Python's csv
    module: the header first, then one encoded chunk per batch. export_csv writes the same
    bytes (the tests hold them equal) without building an object per row; this is its
    reference.
    """
    buffer = io.StringIO()
    writer = _writer(buffer)
    yield HEADER
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(map(_line, rows))
        yield buffer.getvalue().encode()


async def export_csv(
    store: ReportsStore,
    mid: str,
    mode: str,
    query: PaymentQuery,
    write: Callable[[bytes], Awaitable[None]],
) -> None:
    """Write the CSV of every row `query` matches to `write` (a streamed response's), chunk by
    chunk, from one snapshot: RFC 4180, UTF-8, CRLF, the header (CSV_HEADER) first.

    Money is the integer amount in minor units (never quoted) with its currency; times are
    ISO 8601 UTC (utc_iso). Every other cell is quoted, and a text cell beginning with =, +,
    -, @, a tab or a carriage return gets a ' in front (cell(): OWASP's advice, so that a
    merchant's order name or a customer's id never runs as a formula in a spreadsheet).
    PostgreSQL writes the lines (ReportsStore.export_csv, the page's own query); this
    process only forwards them, a network read at a time, waiting for `write`.
    """
    await write(HEADER)
    await store.export_csv(query.params(mid, mode, None, None), write)
