"""The back office's reads of a merchant's payments: the page, the export, timeline, overview.

Every statement is scoped by (mid, mode); the SQL is in reports.sql. What the parameters
mean, and the checks on them, belong to engine/reports (PaymentQuery builds them).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from engine import errors
from engine.models import HistoryItem, HistoryKind
from engine.store.base import UNAVAILABLE, Store, translated
from engine.store.queries import load

Q = load("reports")
_WHOLE = "payment_processes"


def payment_page(payments: str, cancels: str, refunds: str = "refunds") -> str:
    """payment_page with its payments read from `payments`, its cancels from `cancels` and its
    refunds from `refunds` (each a table, or a parenthesized SELECT with the table's columns):
    one `branch` per kind and time column, every filter applied alike in each."""
    branches = (
        ("payment", f"{payments} p", "p.requested_at", "p.status <> 'CANCELED'", "p.status"),
        (
            "cancel",
            f"{cancels} p",
            "p.canceled_at",
            "p.status = 'CANCELED' AND p.canceled_at IS NOT NULL",
            "'CANCELED'",
        ),
        # Canceled without a canceled_at: timed by updated_at (expected to be none or very few).
        (
            "cancel",
            f"{cancels} p",
            "p.updated_at",
            "p.status = 'CANCELED' AND p.canceled_at IS NULL",
            "'CANCELED'",
        ),
        (
            "refund",
            f"{refunds} r JOIN payment_processes p ON p.id = r.payment_id AND p.mid = r.mid",
            "r.requested_at",
            "true",
            "r.status",
        ),
    )
    return Q["payment_page"].format(
        branches="\n    UNION ALL\n".join(
            Q["branch"].format(
                kind=kind,
                source=source,
                at=at,
                state=state,
                status=status,
                row="r" if kind == "refund" else "p",
                refund_id="r.public_id" if kind == "refund" else "NULL::text",
            )
            for kind, source, at, state, status in branches
        )
    )


# payment_page over the whole table; over a search's few matches (their ids and times, then
# the rows a page shows); through payment_search for a currency or amount filter or a search
# with many matches (migration 0017 moved those indexes there); over an amount range's few
# matches (found through payment_search's amount index; the refunds are filtered by their own
# amount, over the whole table).
PAGE = payment_page(_WHOLE, _WHOLE)
SEARCH_PAGE = (
    Q["matched"].format(ids=Q["search_ids"])
    + "\n"
    + payment_page(Q["matched_payments"], "matched_cancels", "matched_refunds")
)
FILTER_PAGE = payment_page(Q["searched"], _WHOLE)
AMOUNT_PAGE = (
    Q["matched"].format(ids=Q["amount_ids"])
    + "\n"
    + payment_page(Q["matched_payments"], "matched_cancels")
)
# A search (or an amount range) that matches fewer of the merchant's payments than this is
# listed from its matches (found through the search or amount indexes, then sorted: cost grows
# with the matches); one that matches more walks payment_search by time (cost grows with the
# rows passed over to find a page of matches, few when matches are that many).
SEARCH_SET_MAX = 10_000
# The CSV export's columns, in order (export_csv names its columns so; its header line).
CSV_COLUMNS = (
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
# export_csv's columns that COPY quotes (all but the amount, a number): a quoted cell is one
# cell whatever the spreadsheet's separator.
EXPORT_QUOTED = tuple(c for c in CSV_COLUMNS if c != "amount")
# An export holds a connection and a snapshot while the client downloads: one that takes longer
# than this (a client reading very slowly) is cut off, so that neither is held for ever.
EXPORT_TIMEOUT_SECONDS = 3600.0
_COMMENTS = re.compile(r"--[^\n]*")


async def page_statement(conn: asyncpg.Connection, params: Sequence[Any]) -> str:
    """The statement for these payment_page params: SEARCH_PAGE for a search with few matches
    (counted on `conn`, in a transaction after custom_plans); AMOUNT_PAGE for an amount range
    with few matches (and no search); FILTER_PAGE for a search with many, or another amount or
    a currency filter (a walk of payment_search); else PAGE. All list the same rows; they
    differ only in how they find them."""
    mid, search, mode = params[0], params[7], params[12]
    amount_from, amount_to = params[5], params[6]
    if search is None:
        if amount_from is not None or amount_to is not None:
            size = await conn.fetchval(
                Q["amount_size"], mid, mode, amount_from, amount_to, SEARCH_SET_MAX
            )
            return AMOUNT_PAGE if size < SEARCH_SET_MAX else FILTER_PAGE
        return FILTER_PAGE if params[13] is not None else PAGE  # a currency
    size = await conn.fetchval(Q["search_size"], mid, mode, search, SEARCH_SET_MAX)
    return SEARCH_PAGE if size < SEARCH_SET_MAX else FILTER_PAGE


def item(r: asyncpg.Record) -> HistoryItem:
    return HistoryItem(**{**dict(r), "kind": HistoryKind(r["kind"])})


class ReportsStore(Store):
    """A merchant's payments, cancels and refunds as the back office and the API list them.

    Lists, the export and the overview read `lists` (a standby's pool when replica reads are
    on, else the same pool): none of them must see a write its caller just made. A payment's
    timeline and a pasted reference read the primary, since they follow an action or a new
    payment.
    """

    def __init__(self, pool: asyncpg.Pool, lists: asyncpg.Pool | None = None) -> None:
        super().__init__(pool)
        self.lists = lists or pool

    @translated
    async def page(self, params: Sequence[Any]) -> list[HistoryItem]:
        """One page of payment_page (params as PaymentQuery.params builds them), read from
        the search's matches when a search matches few (page_statement)."""
        async with self.lists.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(Q["custom_plans"])
            rows = await conn.fetch(await page_statement(conn, params), *params)
        return [item(r) for r in rows]

    async def stream(
        self, params: Sequence[Any], batch: int
    ) -> AsyncIterator[list[asyncpg.Record]]:
        """Every row payment_page matches (params with no limit), `batch` records at a time
        (records, not HistoryItems: an export of millions skips building objects).

        One read-only repeatable-read transaction, so the rows are one snapshot, and a
        server-side cursor, so neither side holds more than a batch.
        """
        try:
            async with (
                self.lists.acquire() as conn,
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):
                await conn.execute(Q["custom_plans"])
                statement = await page_statement(conn, params)
                cursor = await conn.cursor(statement, *params)
                while rows := await cursor.fetch(batch):
                    yield rows
        except UNAVAILABLE as exc:
            raise errors.DatabaseUnavailable() from exc

    async def export_csv(
        self, params: Sequence[Any], write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """The CSV lines (CRLF-terminated, no header) of every row payment_page matches (params
        with no limit), in its order, passed to `write` a network read at a time: PostgreSQL
        writes them (export_csv, by COPY), so this process only forwards bytes.

        The planner plans the COPY for all its rows: a walk of the indexes by time, or for
        most of a long history a scan and a sort (in work_mem, spilling to disk), whose first
        line takes a few seconds (the header is written before). One read-only
        repeatable-read transaction (one snapshot). Memory stays flat: asyncpg
        reads no more from the server until `write` returns, and `write` (a streamed
        response's) waits while the client is behind. If `write` raises (the client went
        away), the export stops at once and that error is raised.
        """
        gone: list[BaseException] = []
        try:
            async with (
                self.lists.acquire() as conn,
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):

                async def lines(data: bytes) -> None:
                    # COPY ends each line with \n; the file's end with CRLF (RFC 4180). Every
                    # line ends in Z" then \n (the time is the last cell, quoted), and Z"\n
                    # cannot occur inside a cell (a quote in a quoted cell is doubled): so these
                    # are exactly the line ends; a line break inside a name stays as it was.
                    try:
                        await write(data.replace(b'Z"\n', b'Z"\r\n'))
                    except BaseException as exc:
                        # Closing the connection ends the COPY at once (the pool opens
                        # another). asyncpg's cancel request instead waits for an answer the
                        # server never gives when it had already sent the last line.
                        gone.append(exc)
                        conn.terminate()
                        raise

                await conn.execute(Q["custom_plans"])
                page = await page_statement(conn, params)
                # asyncpg inlines the parameters (each quoted by the server's quote_literal)
                # wherever $n appears: in comments too, where a value holding a line break
                # would end the comment. So the statement goes without them.
                statement = _COMMENTS.sub("", Q["export_csv"].format(page=page.rstrip("; \n")))
                await conn.copy_from_query(
                    statement,
                    *params,
                    output=lines,
                    format="csv",
                    force_quote=EXPORT_QUOTED,
                    timeout=EXPORT_TIMEOUT_SECONDS,
                )
        except BaseException as exc:
            if gone:  # the writer's error, not the database's (whatever closing it raised)
                raise gone[0] from None
            if isinstance(exc, UNAVAILABLE):
                raise errors.DatabaseUnavailable() from exc
            raise

    @translated
    async def find_exact(self, mid: str, mode: str, text: str) -> str | None:
        """The tid of the merchant's payment whose tid or order id is `text`."""
        found = await self.pool.fetchval(Q["find_exact"], mid, mode, text)
        return str(found) if found is not None else None

    @translated
    async def timeline(self, mid: str, mode: str, tid: str) -> list[asyncpg.Record]:
        """The timeline rows of one payment (empty if it is not the merchant's in `mode`)."""
        return list(await self.pool.fetch(Q["timeline"], tid, mid, mode))

    @translated
    async def overview(
        self, mid: str, mode: str, start: datetime, end: datetime, tz: str, unit: str
    ) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        """(counts, latency histogram) rows per `unit` ('hour' or 'day') in time zone `tz`."""
        args = (mid, mode, start, end, tz, unit)
        async with self.lists.acquire() as conn:
            counts = await conn.fetch(Q["overview_counts"], *args)
            latency = await conn.fetch(Q["overview_latency"], *args)
        return list(counts), list(latency)

    @translated
    async def fold_rollup(self) -> int:
        """Fold the overview's deltas into its rollup; how many delta rows it moved."""
        return int(await self.pool.fetchval(Q["fold_rollup"]))
