"""The merchant's own API keys: issue, list (prefixes only), roll with a grace period, revoke."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api import auth, body, problems, state
from api.body import M
from engine.merchants.keys import IssuedKey
from engine.models import ApiKeyInfo

# A roll's grace period: how long the old key keeps working (at most 30 days).
MAX_GRACE_SECONDS = 30 * 24 * 3600


class IssueRequest(BaseModel):
    """POST /api/keys."""

    model_config = ConfigDict(strict=True, extra="forbid")
    mode: Literal["live", "test"] | None = None
    # A publishable key (pk_) for the browser: it can only start and follow checkout sessions.
    kind: Literal["secret", "publishable"] = "secret"


class RollRequest(BaseModel):
    """POST /api/keys/{id}/roll: the old key works `graceSeconds` more, then stops."""

    model_config = ConfigDict(strict=True, extra="forbid")
    grace_seconds: int = Field(default=0, alias="graceSeconds", ge=0, le=MAX_GRACE_SECONDS)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _info(k: ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": k.id,
        "mode": k.mode,
        "kind": k.kind,
        "prefix": k.prefix,
        "createdAt": _iso(k.created_at),
        "lastUsedAt": _iso(k.last_used_at),
        "expiresAt": _iso(k.expires_at),
        "revokedAt": _iso(k.revoked_at),
    }


def _issued(k: IssuedKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "mode": k.mode,
        "kind": k.kind,
        "prefix": k.prefix,
        # Shown this once; only its hash is kept.
        "key": k.key,
        "createdAt": _iso(k.created_at),
        "expiresAt": _iso(k.expires_at),
    }


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def _body(request: web.Request, model: type[M]) -> M:
    return await body.read_model(request, request.app[state.SETTINGS], model, empty={})


def _key_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise problems.Problem(404, "Not Found", f"no API key {raw!r}", slug="key-not-found")
    return int(raw)


async def list_keys(request: web.Request) -> web.Response:
    """GET /api/keys: this merchant's keys of the caller's mode, prefixes only."""
    who = auth.caller(request)
    keys = await request.app[state.REPO].merchants.api_keys(who.mid, who.mode)
    return _json({"keys": [_info(k) for k in keys]})


async def issue_key(request: web.Request) -> web.Response:
    """POST /api/keys: a new key of the caller's own mode, shown once.

    A test key never mints a live key (nor a live key a test one): live keys come from the
    operator's CLI (and later the back office), so a leaked test key stays a sandbox key.
    """
    body: IssueRequest = await _body(request, IssueRequest)
    who = auth.caller(request)
    if body.mode is not None and body.mode != who.mode:
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
        kind=body.kind,
    )
    return _json(_issued(issued), 201)


async def roll_key(request: web.Request) -> web.Response:
    """POST /api/keys/{id}/roll: a new key now; the old one stops after the grace period."""
    key_id = _key_id(request)
    body: RollRequest = await _body(request, RollRequest)
    who = auth.caller(request)
    settings = request.app[state.SETTINGS]
    rolled = await request.app[state.REPO].merchants.roll_key(
        who.mid,
        who.mode,
        key_id,
        body.grace_seconds,
        settings.api_key_secret,
        max_keys=settings.max_api_keys,
    )
    if rolled is None:
        raise problems.Problem(
            404, "Not Found", f"no active API key {key_id}", slug="key-not-found"
        )
    request.app[auth.CACHE].clear()  # the old key's new expiry applies here at once
    new, old = rolled
    return _json({"new": _issued(new), "old": _info(old)}, 201)


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
    return _json(_info(revoked))


def add_routes(app: web.Application) -> None:
    """Mount the key routes."""
    app.add_routes(
        [
            web.get("/api/keys", list_keys),
            web.post("/api/keys", issue_key),
            web.post("/api/keys/{id}/roll", roll_key),
            web.delete("/api/keys/{id}", revoke_key),
        ]
    )
