"""The overview: volume, success rate, approval latency and failure reasons of the merchant's
mode over today (by hour), 7 or 30 days (by day), in the user's zone, as SVG charts. The
figures come from engine/reports (a rollup kept by a trigger), not from the page."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from api import state
from api.backoffice import charts, context, i18n
from api.backoffice.context import PREFIX, PageError
from engine import reports

RANGES = ("today", "7d", "30d")


async def show(request: web.Request) -> web.Response:
    """GET /backoffice/overview?range=today|7d|30d."""
    mid, mode = context.merchant_scope(request)
    range_ = request.query.get("range", "today")
    if range_ not in RANGES:
        raise PageError(422, "Unprocessable Content", f"range: one of {', '.join(RANGES)}")
    tz = context.zone_of(request, request.app[state.SETTINGS].backoffice_time_zone)
    found = await reports.overview(request.app[context.REPORTS], mid, mode, range_, tz)
    _ = context.translator(request)
    zone = i18n.zone(tz)
    fmt = "%H" if found.unit == "hour" else "%m-%d"
    labels = [b.start.astimezone(zone).strftime(fmt) for b in found.buckets]
    rate = [None if b.success_rate is None else b.success_rate * 100 for b in found.buckets]
    reasons: Counter[str] = Counter()
    volume: Counter[str] = Counter()
    for b in found.buckets:
        reasons.update(b.failures)
        volume.update(b.succeeded_amount)
    top = reasons.most_common(8)
    figures = [
        charts.bars(_("Volume"), labels, [b.count for b in found.buckets], lambda v: f"{v:,.0f}"),
        charts.bars(_("Success rate"), labels, rate, lambda v: f"{v:.0f} %", top=100.0),
        charts.bars(
            _("Approval latency") + " p50",
            labels,
            [b.latency_p50_ms for b in found.buckets],
            lambda v: f"{v:,.0f} ms",
        ),
        charts.bars(
            _("Approval latency") + " p95",
            labels,
            [b.latency_p95_ms for b in found.buckets],
            lambda v: f"{v:,.0f} ms",
        ),
        charts.bars(
            _("Failure reasons"),
            [r for r, _n in top],
            [n for _r, n in top],
            lambda v: f"{v:,.0f}",
            css="bar bad",
        ),
    ]
    money = context.money_of(request)
    return context.render(
        request,
        "overview.html",
        {
            "range": range_,
            "ranges": RANGES,
            "figures": figures,
            "captured": [money(v, c) for c, v in sorted(volume.items())],
            "count": sum(b.count for b in found.buckets),
            "start": context.when_in(found.start, tz),
            "end": context.when_in(found.end, tz),
        },
    )


def add_routes(app: web.Application) -> None:
    """Mount the overview."""
    app.router.add_get(f"{PREFIX}/overview", show)
