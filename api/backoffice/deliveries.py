"""The webhook delivery log: filtered by state, event type and event id, newest first; resend
one delivery, or every delivery the filter matches (at most RESEND_LIMIT per click)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from api.backoffice import context
from api.backoffice.context import PREFIX, PageError
from engine.store.backoffice import DELIVERY_STATES

PAGE = 50
RESEND_LIMIT = 1000
EVENT_TYPES = ("SUCCESS", "FAILED", "CANCELED", "REFUNDED", "REFUND_FAILED")
_EVENT_ID = re.compile(r"^[A-Za-z0-9_]{1,100}$")
_ID = re.compile(r"^[0-9]{1,18}$")


def _filters(values: MultiMapping[str]) -> dict[str, str]:
    """state, eventType and eventId as given (empty left out); PageError 422 when bad."""
    found = {k: values.get(k, "").strip() for k in ("state", "eventType", "eventId")}
    if found["state"] and found["state"] not in DELIVERY_STATES:
        raise PageError(422, "Unprocessable Content", f"state: one of {', '.join(DELIVERY_STATES)}")
    if found["eventType"] and found["eventType"] not in EVENT_TYPES:
        raise PageError(422, "Unprocessable Content", f"eventType: one of {', '.join(EVENT_TYPES)}")
    if found["eventId"] and not _EVENT_ID.match(found["eventId"]):
        raise PageError(422, "Unprocessable Content", "eventId: letters, digits and _ only")
    return {k: v for k, v in found.items() if v}


async def show(request: web.Request) -> web.Response:
    """GET /backoffice/deliveries."""
    mid, mode = context.merchant_scope(request)
    f = _filters(request.query)
    raw_before = request.query.get("before", "")
    if raw_before and not _ID.match(raw_before):
        raise PageError(422, "Unprocessable Content", "before: a delivery id")
    rows = await request.app[context.CONSOLE].deliveries(
        mid,
        mode,
        state=f.get("state"),
        event_type=f.get("eventType"),
        event_id=f.get("eventId"),
        before=int(raw_before or 0),
        limit=PAGE + 1,
    )
    page = rows[:PAGE]
    more = f | {"before": str(page[-1].id)} if len(rows) > PAGE else None
    return context.render(
        request,
        "deliveries.html",
        {
            "rows": page,
            "f": f,
            "states": DELIVERY_STATES,
            "event_types": EVENT_TYPES,
            "next_query": urlencode(more) if more else None,
            "done": request.query.get("done", "")[:40],
        },
    )


async def _resend(request: web.Request, delivery_id: int) -> web.Response:
    mid, mode = context.merchant_scope(request)
    f = _filters(context.form(request)) if delivery_id == 0 else {}
    count = await request.app[context.CONSOLE].resend(
        mid,
        mode,
        delivery_id=delivery_id,
        state=f.get("state"),
        event_type=f.get("eventType"),
        event_id=f.get("eventId"),
        limit=RESEND_LIMIT,
    )
    if delivery_id and not count:
        raise PageError(404, "Not Found", f"no delivery {delivery_id} to resend")
    raise context.redirect("/deliveries", f | {"done": f"resent {count}"})


async def resend_one(request: web.Request) -> web.Response:
    """POST /backoffice/deliveries/{id}/resend."""
    raw = request.match_info["id"]
    if not _ID.match(raw) or int(raw) == 0:
        raise PageError(404, "Not Found", "no such delivery")
    return await _resend(request, int(raw))


async def resend_matching(request: web.Request) -> web.Response:
    """POST /backoffice/deliveries/resend: every delivery the posted filter matches."""
    return await _resend(request, 0)


def add_routes(app: web.Application) -> None:
    """Mount the delivery log."""
    app.add_routes(
        [
            web.get(f"{PREFIX}/deliveries", show),
            web.post(f"{PREFIX}/deliveries/resend", resend_matching),
            web.post(f"{PREFIX}/deliveries/{{id}}/resend", resend_one),
        ]
    )
