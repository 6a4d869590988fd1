"""Logging in and out: throttled password checks, sessions as random tokens.

A session token is 32 random bytes in an HttpOnly cookie; the database keeps its SHA-256 only.
Every attempt is recorded before the password is checked and counted per account (the email
typed, known or not) and per client address; past either limit the answer is "wait", without
checking the password, so guessing costs the attacker time whatever the account.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass

import structlog

from config.settings import Settings
from engine.passwords import Checker
from engine.store.accounts import AccountStore, User

log = structlog.get_logger()

MAX_EMAIL = 254


def token_hash(token: str) -> bytes:
    """What the database keeps of a session token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def normal_email(email: str) -> str:
    """An email as accounts are keyed: trimmed, lower case."""
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A new session: its token goes into the cookie, and only there."""

    token: str
    session_id: int
    user: User


@dataclass(frozen=True, slots=True)
class Throttled:
    """Too many attempts: try again in `retry_after` seconds."""

    retry_after: int


async def log_in(
    store: AccountStore,
    checker: Checker,
    settings: Settings,
    email: str,
    password: str,
    address: str,
) -> LoggedIn | Throttled | None:
    """A session for the right password; Throttled past a limit; None for a wrong login."""
    email = normal_email(email)[:MAX_EMAIL]
    account = f"account:{email}"
    attempt = await store.login_attempt(
        account, f"address:{address}", settings.backoffice_login_window_seconds
    )
    waits = []
    if attempt.account > settings.backoffice_login_failures_per_account:
        waits.append(attempt.account_clears_in)
    if attempt.address > settings.backoffice_login_failures_per_address:
        waits.append(attempt.address_clears_in)
    if waits:
        log.warning("backoffice.login_throttled", email=email, address=address)
        return Throttled(max(1, math.ceil(max(waits))))
    found = await store.user_for_login(email)
    if not await checker.verify(found[1] if found else None, password) or found is None:
        log.warning("backoffice.login_failed", email=email, address=address)
        return None
    user = found[0]
    await store.login_succeeded(attempt.ids, account)
    token = secrets.token_urlsafe(32)
    session_id = await store.create_session(
        token_hash(token),
        user.id,
        secrets.token_urlsafe(32),
        settings.backoffice_session_hours * 3600,
        address,
    )
    log.info("backoffice.login", user=user.id, role=user.role, mid=user.mid)
    return LoggedIn(token, session_id, user)
