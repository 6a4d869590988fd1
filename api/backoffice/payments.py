"""The payments page: filtered, paged history of the merchant's mode; saved views; CSV.

The rows come from engine/reports (the API's `GET /api/payments` reads the same), one page at
a time by keyset (a signed cursor, as the API's). The CSV export is the engine's, streamed
chunk by chunk from one snapshot as PostgreSQL writes it, and only as fast as the client
reads, so a large export holds one network read in memory at a time.
"""

from __future__ import annotations

from aiohttp import web

from api import state
from api.backoffice import context, filters, middleware
from api.backoffice.context import PREFIX, PageError
from engine import reports

PAGE = 50


def _zone(request: web.Request) -> str:
    return context.zone_of(request, request.app[state.SETTINGS].backoffice_time_zone)


async def _exact(request: web.Request, text: str) -> str | None:
    """The tid of the payment whose tid or order id is exactly `text`, if any."""
    mid, mode = context.merchant_scope(request)
    return await reports.find_exact(request.app[context.REPORTS], mid, mode, text)


def _range(request: web.Request, f: filters.Filters) -> str:
    """What the page says about the dates it shows (there is no hidden default window)."""
    _ = context.translator(request)
    tz = _zone(request)
    start = context.when_in(f.payment_query.created_from, tz)
    end = context.when_in(f.payment_query.created_to, tz)
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
    found = await reports.page(
        request.app[context.REPORTS],
        mid,
        mode,
        f.payment_query,
        raw_cursor[:500] if raw_cursor else None,
        PAGE,
        secret=request.app[state.SETTINGS].api_key_secret,
    )
    next_cursor = found.next_cursor
    views = await request.app[context.ACCOUNTS].views(context.user(request).id, mode)
    response = context.render(
        request,
        "payments.html",
        {
            "f": f,
            "rows": found.rows,
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


async def export_csv(request: web.Request) -> web.StreamResponse:
    """GET /backoffice/payments.csv: every row the filter matches, streamed as it is read."""
    mid, mode = context.merchant_scope(request)
    f = filters.parse(request.query, _zone(request))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="payments-{mid}-{mode}.csv"',
        }
    )
    middleware.headers(response, request.app[state.SETTINGS].env == "production")
    await response.prepare(request)
    await reports.export_csv(
        request.app[context.REPORTS], mid, mode, f.payment_query, response.write
    )
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
