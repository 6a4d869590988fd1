"""The developers page: API keys (issue with a name and an expiry, roll with a grace period,
revoke) and webhook endpoints (add, roll the secret, delete, send a test event).

Secrets are shown once, on the page that answers the form that made them, with a copy
button; only their hashes (keys) or the endpoint's row (secrets) are kept. Each action goes
through the repository and the API's own endpoint functions.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

from aiohttp import web

from api import auth, state
from api.backoffice import context, i18n
from api.backoffice.context import PREFIX, PageError
from api.merchant import endpoints
from engine import errors
from engine.webhooks import signing

_ID = re.compile(r"^[0-9]{1,18}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Grace periods offered when rolling (seconds): at once, an hour, a day, a week.
GRACES = (0, 3600, 86400, 7 * 86400)


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not _ID.match(raw):
        raise PageError(404, "Not Found", f"no such item: {raw[:20]!r}")
    return int(raw)


def _grace(request: web.Request) -> int:
    raw = context.field(request, "grace", required=False, limit=10) or "0"
    if not raw.isdigit() or int(raw) not in GRACES:
        raise PageError(422, "Unprocessable Content", "grace: choose one of the offered periods")
    return int(raw)


def _expiry(request: web.Request) -> datetime | None:
    """The optional expiry date: the key stops at the start of the next day, user's zone."""
    raw = context.field(request, "expires", required=False, limit=10)
    if not raw:
        return None
    try:
        if not _DATE.match(raw):
            raise ValueError(raw)
        day = datetime.strptime(raw, "%Y-%m-%d").date() + timedelta(days=1)
    except (ValueError, OverflowError):
        raise PageError(422, "Unprocessable Content", "expires: a date (YYYY-MM-DD)") from None
    zone = context.zone_of(request, request.app[state.SETTINGS].backoffice_time_zone)
    ends = datetime.combine(day, time(), i18n.zone(zone))
    if ends <= datetime.now(ends.tzinfo):
        raise PageError(422, "Unprocessable Content", "expires: must be today or later")
    return ends


async def _page(request: web.Request, extra: dict[str, Any], status: int = 200) -> web.Response:
    mid, mode = context.merchant_scope(request)
    repo = request.app[state.REPO]
    names = await request.app[context.CONSOLE].key_names(mid, mode)
    return context.render(
        request,
        "developers.html",
        {
            "keys": await repo.merchants.api_keys(mid, mode),
            "names": names,
            "endpoints": await repo.endpoints.endpoints(mid, mode),
            "graces": GRACES,
            "now": datetime.now(UTC),
            "secret": None,
            "secret_label": "",
            "done": request.query.get("done", "")[:40],
        }
        | extra,
        status,
    )


async def show(request: web.Request) -> web.Response:
    """GET /backoffice/developers."""
    return await _page(request, {})


async def issue_key(request: web.Request) -> web.Response:
    """POST /backoffice/keys: a key of the selected mode, named, maybe expiring; shown once."""
    mid, mode = context.merchant_scope(request)
    name = context.field(request, "name", limit=80)
    expires = _expiry(request)
    settings = request.app[state.SETTINGS]
    issued = await request.app[state.REPO].merchants.issue_key(
        mid, mode, settings.api_key_secret, expires, max_keys=settings.max_api_keys
    )
    await request.app[context.CONSOLE].name_key(mid, mode, issued.id, name)
    return await _page(request, {"secret": issued.key, "secret_label": name}, 201)


async def roll_key(request: web.Request) -> web.Response:
    """POST /backoffice/keys/{id}/roll: a new key now; the old one works `grace` more."""
    mid, mode = context.merchant_scope(request)
    key_id = _id(request)
    settings = request.app[state.SETTINGS]
    rolled = await request.app[state.REPO].merchants.roll_key(
        mid, mode, key_id, _grace(request), settings.api_key_secret, max_keys=settings.max_api_keys
    )
    if rolled is None:
        raise PageError(404, "Not Found", f"no active API key {key_id}")
    request.app[auth.CACHE].clear()  # the old key's new expiry applies here at once
    new, _old = rolled
    name = (await request.app[context.CONSOLE].key_names(mid, mode)).get(key_id) or new.prefix
    await request.app[context.CONSOLE].name_key(mid, mode, new.id, name)
    return await _page(request, {"secret": new.key, "secret_label": name}, 201)


async def revoke_key(request: web.Request) -> web.Response:
    """POST /backoffice/keys/{id}/revoke: the key stops working now."""
    mid, mode = context.merchant_scope(request)
    key_id = _id(request)
    if await request.app[state.REPO].merchants.revoke_key(mid, mode, key_id) is None:
        raise PageError(404, "Not Found", f"no API key {key_id} to revoke")
    request.app[auth.CACHE].clear()
    raise context.redirect("/developers", {"done": "revoked"})


async def add_endpoint(request: web.Request) -> web.Response:
    """POST /backoffice/endpoints: register a url of the selected mode; its secret once."""
    mid, mode = context.merchant_scope(request)
    url = context.field(request, "url", limit=2048)
    description = context.field(request, "description", required=False) or None
    created, secret = await endpoints.register(request.app, mid, mode, url, description)
    return await _page(request, {"secret": secret, "secret_label": created.url}, 201)


async def roll_endpoint(request: web.Request) -> web.Response:
    """POST /backoffice/endpoints/{id}/roll: a new secret; the old ones sign `grace` more."""
    mid, mode = context.merchant_scope(request)
    endpoint_id = _id(request)
    grace = _grace(request)
    secret = signing.new_secret()
    if not await request.app[state.REPO].endpoints.roll_endpoint(
        mid, mode, endpoint_id, secret, grace
    ):
        raise errors.EndpointNotFound(endpoint_id)
    return await _page(request, {"secret": secret, "secret_label": f"#{endpoint_id}"}, 201)


async def delete_endpoint(request: web.Request) -> web.Response:
    """POST /backoffice/endpoints/{id}/delete: it receives nothing more."""
    mid, mode = context.merchant_scope(request)
    endpoint_id = _id(request)
    if await request.app[state.REPO].endpoints.delete_endpoint(mid, mode, endpoint_id) is None:
        raise errors.EndpointNotFound(endpoint_id)
    raise context.redirect("/developers", {"done": "deleted"})


async def test_endpoint(request: web.Request) -> web.Response:
    """POST /backoffice/endpoints/{id}/test: send a TEST event now and show the answer."""
    mid, mode = context.merchant_scope(request)
    answer = await endpoints.test_event(request.app, mid, mode, _id(request))
    code = answer.response_code
    result = "delivered" if answer.delivered else f"failed: {answer.error}"
    raise context.redirect("/developers", {"done": f"test {result} ({code})"})


def add_routes(app: web.Application) -> None:
    """Mount the developers page and its forms."""
    app.add_routes(
        [
            web.get(f"{PREFIX}/developers", show),
            web.post(f"{PREFIX}/keys", issue_key),
            web.post(f"{PREFIX}/keys/{{id}}/roll", roll_key),
            web.post(f"{PREFIX}/keys/{{id}}/revoke", revoke_key),
            web.post(f"{PREFIX}/endpoints", add_endpoint),
            web.post(f"{PREFIX}/endpoints/{{id}}/roll", roll_endpoint),
            web.post(f"{PREFIX}/endpoints/{{id}}/delete", delete_endpoint),
            web.post(f"{PREFIX}/endpoints/{{id}}/test", test_endpoint),
        ]
    )
