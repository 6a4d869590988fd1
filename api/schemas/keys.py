"""API key bodies: what a key request may say, and how keys are shown (the key itself once)."""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import Instant, Mode, Request, Response

# A roll's grace period: how long the old key keeps working (at most 30 days).
MAX_GRACE_SECONDS = 30 * 24 * 3600
KEY_PATTERN = r"^sk_(live|test)_[0-9A-Za-z]{43}$"
PREFIX_PATTERN = r"^sk_(live|test)_[0-9A-Za-z]{6}$"


class IssueRequest(Request):
    """POST /api/keys."""

    mode: Mode | None = None


class RollRequest(Request):
    """POST /api/keys/{id}/roll: the old key works `graceSeconds` more, then stops."""

    grace_seconds: int = Field(default=0, alias="graceSeconds", ge=0, le=MAX_GRACE_SECONDS)


class ApiKeyInfo(Response):
    """An API key as lists show it: its prefix, never the key."""

    id: int = Field(ge=1)
    mode: Mode
    prefix: str = Field(pattern=PREFIX_PATTERN)
    created_at: Instant
    last_used_at: Instant | None
    # Set by a roll's grace period: the key stops working then.
    expires_at: Instant | None
    revoked_at: Instant | None


class ApiKeyList(Response):
    """The caller's merchant's keys, newest first."""

    keys: list[ApiKeyInfo]


class IssuedKey(Response):
    """A key just made. `key` is shown this once; only its hash is kept."""

    id: int = Field(ge=1)
    mode: Mode
    prefix: str = Field(pattern=PREFIX_PATTERN)
    key: str = Field(pattern=KEY_PATTERN)
    created_at: Instant
    expires_at: Instant | None


class RolledKey(Response):
    """201 of a roll: the new key (shown once), and the old one with the end of its grace."""

    new: IssuedKey
    old: ApiKeyInfo
