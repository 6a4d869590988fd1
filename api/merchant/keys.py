"""The merchant's own API keys: issue, list (prefixes only), roll with a grace period, revoke."""

from __future__ import annotations

from aiohttp import web

from api import auth, body, problems, responses, state
from api.operations import UNAVAILABLE, documented, id_in_path, id_links, path_id
from api.schemas.keys import ApiKeyInfo, ApiKeyList, IssuedKey, IssueRequest, RolledKey, RollRequest

_NOT_FOUND = "This merchant has no such (active) API key."
_BAD_JSON = "The body is not JSON: malformed, not UTF-8, duplicate keys."
_BAD_BODY = "A member is unknown or invalid; `field` names it."
_AT_LIMIT = (
    "The merchant has as many active keys of this mode as it may have"
    " (/problems/limit-reached, `limit` says how many)."
)


def _key_id(request: web.Request) -> int:
    return id_in_path(
        request,
        lambda raw: problems.Problem(404, "Not Found", f"no API key {raw!r}", slug="key-not-found"),
    )


@documented(
    "listKeys",
    "The merchant's API keys (prefixes only), newest first.",
    ok={200: (ApiKeyList, "The keys.")},
    problems={503: UNAVAILABLE},
)
async def list_keys(request: web.Request) -> web.Response:
    """GET /api/keys: this merchant's keys of the caller's mode, prefixes only."""
    who = auth.caller(request)
    keys = await request.app[state.REPO].merchants.api_keys(who.mid, who.mode)
    return responses.send(ApiKeyList(keys=[ApiKeyInfo.of(k) for k in keys]))


@documented(
    "issueKey",
    "A new API key, shown once; of the caller's mode unless `mode` says.",
    body=IssueRequest,
    body_required=False,
    ok={201: (IssuedKey, "The new key.")},
    # A fuzzer may roll or revoke only keys it made itself, never the one it calls with.
    links={201: id_links(("rollKey", "revokeKey"))},
    problems={
        400: _BAD_JSON,
        403: "`mode` names the other mode: a key issues keys of its own"
        " mode only (/problems/mode-mismatch, `field` mode).",
        409: _AT_LIMIT,
        422: _BAD_BODY,
        503: UNAVAILABLE,
    },
)
async def issue_key(request: web.Request) -> web.Response:
    """POST /api/keys: a new key of the caller's own mode, shown once.

    A test key never mints a live key (nor a live key a test one): live keys come from the
    operator's CLI (and later the back office), so a leaked test key stays a sandbox key.
    """
    req = await body.model_of(request, IssueRequest, empty_ok=True)
    who = auth.caller(request)
    if req.mode is not None and req.mode != who.mode:
        raise problems.Problem(
            403,
            "Forbidden",
            f"a {who.mode} key can issue {who.mode} keys only",
            slug="mode-mismatch",
            field="mode",
        )
    settings = request.app[state.SETTINGS]
    issued = await request.app[state.REPO].merchants.issue_key(
        who.mid,
        who.mode,
        settings.api_key_secret,
        max_keys=settings.max_api_keys,
        kind=req.kind,
    )
    return responses.send(IssuedKey.of(issued), 201)


@documented(
    "rollKey",
    "A new key now; the old one works `graceSeconds` more, then stops.",
    params=[path_id("id")],
    body=RollRequest,
    body_required=False,
    ok={201: (RolledKey, "The new key and the old one's end.")},
    problems={400: _BAD_JSON, 404: _NOT_FOUND, 409: _AT_LIMIT, 422: _BAD_BODY, 503: UNAVAILABLE},
)
async def roll_key(request: web.Request) -> web.Response:
    """POST /api/keys/{id}/roll: a new key now; the old one stops after the grace period."""
    key_id = _key_id(request)
    req = await body.model_of(request, RollRequest, empty_ok=True)
    who = auth.caller(request)
    settings = request.app[state.SETTINGS]
    rolled = await request.app[state.REPO].merchants.roll_key(
        who.mid,
        who.mode,
        key_id,
        req.grace_seconds,
        settings.api_key_secret,
        max_keys=settings.max_api_keys,
    )
    if rolled is None:
        raise problems.Problem(
            404, "Not Found", f"no active API key {key_id}", slug="key-not-found"
        )
    request.app[auth.CACHE].clear()  # the old key's new expiry applies here at once
    new, old = rolled
    return responses.send(RolledKey(new=IssuedKey.of(new), old=ApiKeyInfo.of(old)), 201)


@documented(
    "revokeKey",
    "The key stops working now.",
    params=[path_id("id")],
    ok={200: (ApiKeyInfo, "The revoked key.")},
    problems={404: _NOT_FOUND, 503: UNAVAILABLE},
)
async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /api/keys/{id}: the key stops working now."""
    key_id = _key_id(request)
    who = auth.caller(request)
    revoked = await request.app[state.REPO].merchants.revoke_key(who.mid, who.mode, key_id)
    if revoked is None:
        raise problems.Problem(
            404, "Not Found", f"no API key {key_id} to revoke", slug="key-not-found"
        )
    request.app[auth.CACHE].clear()  # the key stops working here at once
    return responses.send(ApiKeyInfo.of(revoked))


ROUTES = [
    web.get("/api/keys", list_keys),
    web.post("/api/keys", issue_key),
    web.post("/api/keys/{id}/roll", roll_key),
    web.delete("/api/keys/{id}", revoke_key),
]
