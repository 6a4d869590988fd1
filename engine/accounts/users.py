"""Creating back office users: checked here once, for the operators' command and the demo."""

from __future__ import annotations

import re

from argon2 import PasswordHasher

from engine import passwords
from engine.accounts.sessions import MAX_EMAIL, normal_email
from engine.store.accounts import AccountStore, User
from engine.store.repository import Repository

ROLES = ("admin", "viewer", "operator")
_EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")


class UserRefused(ValueError):
    """The user cannot be created as asked; the message says why."""


def check(email: str, role: str, mid: str | None, password: str) -> str:
    """The normalised email, or UserRefused naming what is wrong."""
    email = normal_email(email)
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise UserRefused(f"email: {email!r} is not an email address")
    if role not in ROLES:
        raise UserRefused(f"role: must be one of {', '.join(ROLES)}")
    if role == "operator" and mid is not None:
        raise UserRefused("mid: an operator belongs to no merchant")
    if role != "operator" and not mid:
        raise UserRefused("mid: a merchant user needs the merchant's mid (--mid)")
    why = passwords.problem(password)
    if why:
        raise UserRefused(f"password: {why}")
    return email


async def create(
    accounts: AccountStore,
    repo: Repository,
    ph: PasswordHasher,
    *,
    email: str,
    role: str,
    mid: str | None,
    password: str,
    time_zone: str | None = None,
) -> User:
    """A new user; UserRefused for bad input, an unknown merchant or a taken email."""
    email = check(email, role, mid, password)
    if mid is not None and await repo.merchants.merchant(mid) is None:
        raise UserRefused(f"mid: no merchant {mid!r}")
    created = await accounts.create_user(
        email, await passwords.hash_password(ph, password), role, mid, time_zone
    )
    if created is None:
        raise UserRefused(f"email: a user {email!r} exists already")
    return created
