"""The payments page: filtered, paged history of the merchant's mode; saved views; CSV.

The rows come from the engine's history (the API's `GET /api/payments` reads the same), one
page at a time by keyset (a signed cursor, as the API's). The CSV export walks every page of
the same filter and streams it, so a large export holds one page in memory at a time.
"""

from __future__ import annotations

import csv
import io
import re

from aiohttp import web

from api import state
from api.backoffice import context, filters, middleware
from api.backoffice.context import PREFIX, PageError
from api.merchant import history
from engine.models import HistoryItem

PAGE = 50
EXPORT_PAGE = 1000
_TID = re.compile(r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$")
CSV_COLUMNS = (
    "kind",
    "tid",
    "refundId",
    "orderId",
    "orderName",
    "customerId",
    "amount",
    "currency",
    "status",
    "createdAt",
)
# A cell a spreadsheet would run as a formula is written with a leading apostrophe (OWASP).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _zone(request: web.Request) -> str:
    return context.zone_of(request, request.app[state.SETTINGS].backoffice_time_zone)


def _scope_key(request: web.Request) -> str:
    mid, mode = context.merchant_scope(request)
    return f"{mid}/{mode}"


async def _exact(request: web.Request, text: str) -> str | None:
    """The tid of the payment whose tid or order id is exactly `text`, if any."""
    mid, mode = context.merchant_scope(request)
    repo = request.app[state.REPO]
    found = await repo.payments.payment_by_tid(text, mid, mode) if _TID.match(text) else None
    if found is None and len(text) <= 64:
        found = await repo.payments.payment_by_order(mid, text, mode)
    return found.tid if found else None


def _range(request: web.Request, f: filters.Filters) -> str:
    """What the page says about the dates it shows (there is no hidden default window)."""
    _ = context.translator(request)
    tz = _zone(request)
    start = context.when_in(f.history.created_from, tz)
    end = context.when_in(f.history.created_to, tz)
    if start and end:
        return _("Showing {start} to {end}", start=start, end=end)
    if start:
        return _("Showing every date") + ", " + _("from {start}", start=start)
    if end:
        return _("Showing every date") + ", " + _("until {end}", end=end)
    return _("Showing every date")


async def list_payments(request: web.Request) -> web.Response:
    """GET /backoffice/payments: the filtered list, newest first, a page at a time."""
    mid, mode = context.merchant_scope(request)
    f = filters.parse(request.query, _zone(request))
    if f.only_search and "cursor" not in request.query:
        tid = await _exact(request, f.one("q"))
        if tid is not None:
            target = context.url(f"/payments/{tid}")
            if request.headers.get("HX-Request"):  # htmx would swap the page into the list
                raise web.HTTPOk(headers={"HX-Redirect": target})
            raise web.HTTPSeeOther(target)
    raw_cursor = request.query.get("cursor")
    clean = context.url("/payments", [*f.query, *([("cursor", raw_cursor)] if raw_cursor else [])])
    if clean != request.path_qs and not request.headers.get("HX-Request"):
        raise web.HTTPSeeOther(clean)  # a form leaves empty fields in the URL: tidy it
    secret = request.app[state.SETTINGS].api_key_secret
    after = None
    if raw_cursor:
        after = history.decode_cursor(raw_cursor[:500], _scope_key(request), secret)
    rows = await request.app[state.REPO].history.page(mid, mode, f.history, after, PAGE + 1)
    page, more = rows[:PAGE], len(rows) > PAGE
    next_cursor = history.encode_cursor(page[-1].key, _scope_key(request), secret) if more else None
    views = await request.app[context.ACCOUNTS].views(context.user(request).id, mode)
    response = context.render(
        request,
        "payments.html",
        {
            "f": f,
            "rows": page,
            "kinds": filters.KINDS,
            "statuses": filters.STATUSES,
            "range": _range(request, f),
            "next_query": [*f.query, ("cursor", next_cursor)] if next_cursor else None,
            "first_query": f.query if raw_cursor else None,
            "views": views,
        },
    )
    response.headers["HX-Push-Url"] = clean  # the address bar shows the tidy URL too
    return response


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA) else text


def _csv_row(i: HistoryItem) -> list[str]:
    return [
        _cell(v)
        for v in (
            i.kind.value,
            i.tid,
            i.refund_id,
            i.order_id,
            i.order_name,
            i.user_public_id,
            i.amount,
            i.currency,
            i.status,
            i.created_at.isoformat(),
        )
    ]


async def export_csv(request: web.Request) -> web.StreamResponse:
    """GET /backoffice/payments.csv: every row the filter matches, streamed page by page."""
    mid, mode = context.merchant_scope(request)
    f = filters.parse(request.query, _zone(request))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="payments-{mid}-{mode}.csv"',
        }
    )
    middleware.headers(response, request.app[state.SETTINGS].env == "production")
    repo = request.app[state.REPO]
    after = None
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    while True:
        rows = await repo.history.page(mid, mode, f.history, after, EXPORT_PAGE)
        writer.writerows(_csv_row(i) for i in rows)
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < EXPORT_PAGE:
            break
        after = rows[-1].key
    await response.write_eof()
    return response


async def save_view(request: web.Request) -> web.Response:
    """POST /backoffice/views: save the current filters under a name."""
    _, mode = context.merchant_scope(request)
    name = context.field(request, "name", limit=80)
    f = filters.parse_saved(
        context.field(request, "query", required=False, limit=2000), _zone(request)
    )
    await request.app[context.ACCOUNTS].save_view(
        context.user(request).id, mode, name, f.query_string
    )
    raise context.redirect("/payments", f.query)


async def delete_view(request: web.Request) -> web.Response:
    """POST /backoffice/views/delete: forget one of the user's views."""
    _, mode = context.merchant_scope(request)
    raw = context.field(request, "id", limit=18)
    if not raw.isdigit():
        raise PageError(404, "Not Found", "no such view")
    if not await request.app[context.ACCOUNTS].delete_view(
        context.user(request).id, mode, int(raw)
    ):
        raise PageError(404, "Not Found", "no such view")
    raise context.redirect("/payments")


def add_routes(app: web.Application) -> None:
    """Mount the payments list, its export and the saved views."""
    app.add_routes(
        [
            web.get(f"{PREFIX}/payments", list_payments),
            web.get(f"{PREFIX}/payments.csv", export_csv),
            web.post(f"{PREFIX}/views", save_view),
            web.post(f"{PREFIX}/views/delete", delete_view),
        ]
    )
