"""The back office's accounts: users, sessions, login throttling, saved views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.store.base import Store, translated
from engine.store.queries import load


@dataclass(frozen=True, slots=True)
class User:
    """A person who logs in: a merchant's admin or viewer, or one of our operators."""

    id: int
    email: str
    role: str
    # The merchant a merchant user belongs to; None for an operator.
    mid: str | None
    time_zone: str | None
    created_at: datetime
    disabled_at: datetime | None = None

    @property
    def is_operator(self) -> bool:
        """Our staff: the operator console, never a merchant's pages."""
        return self.role == "operator"

    @property
    def can_act(self) -> bool:
        """Admins and operators change things; a viewer only reads."""
        return self.role in ("admin", "operator")


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and its user, as a request finds it."""

    id: int
    csrf_token: str
    mode: str
    expires_at: datetime
    user: User


@dataclass(frozen=True, slots=True)
class SavedView:
    """A user's named filter of the payments page (the query string it stands for)."""

    id: int
    name: str
    query: str
    created_at: datetime


Q = load("accounts")

_USER_FIELDS = ("id", "email", "role", "mid", "time_zone", "created_at", "disabled_at")


def _user(r: Any, id_field: str = "id") -> User:
    return User(**{f: r[id_field if f == "id" else f] for f in _USER_FIELDS})


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt as recorded: its rows, and how many each scope has in the window."""

    ids: list[int]
    account: int
    address: int
    # Seconds until the oldest attempt of each scope leaves the window.
    account_clears_in: float
    address_clears_in: float


class AccountStore(Store):
    """Users, sessions, failed logins and saved views, on the shared pool."""

    @translated
    async def create_user(
        self, email: str, password_hash: str, role: str, mid: str | None, time_zone: str | None
    ) -> User | None:
        """A new user; None when the email is taken."""
        row = await self.pool.fetchrow(Q["insert_user"], email, password_hash, role, mid, time_zone)
        return _user(row) if row else None

    @translated
    async def set_password(self, email: str, password_hash: str) -> User | None:
        """Change a user's password; None when there is no such user."""
        row = await self.pool.fetchrow(Q["set_password"], email, password_hash)
        return _user(row) if row else None

    @translated
    async def user_for_login(self, email: str) -> tuple[User, str] | None:
        """The enabled user with this email and its password hash."""
        row = await self.pool.fetchrow(Q["user_for_login"], email)
        return (_user(row), row["password_hash"]) if row else None

    @translated
    async def users_of(self, mid: str) -> list[User]:
        """A merchant's users, oldest first."""
        return [_user(r) for r in await self.pool.fetch(Q["users_of_merchant"], mid)]

    @translated
    async def login_attempt(self, account: str, address: str, window: float) -> Attempt:
        """Record one attempt (a failure until login_succeeded says otherwise) and count."""
        async with self.pool.acquire() as conn, conn.transaction():
            for scope in sorted((account, address)):  # one order: no deadlock between two
                await conn.execute(Q["login_lock"], scope)
            r = await conn.fetchrow(Q["login_attempt"], account, address, window)
            await conn.execute(Q["prune_login_failures"], window)
        assert r is not None
        now: datetime = r["now"]
        return Attempt(
            ids=list(r["ids"]),
            account=r["account"],
            address=r["address"],
            account_clears_in=window - (now - r["account_oldest"]).total_seconds(),
            address_clears_in=window - (now - r["address_oldest"]).total_seconds(),
        )

    @translated
    async def login_succeeded(self, attempt_ids: list[int], account: str) -> None:
        """The attempt was right: it is no failure, and the account's count starts over."""
        await self.pool.execute(Q["login_succeeded"], attempt_ids, account)

    @translated
    async def create_session(
        self, token_hash: bytes, user_id: int, csrf_token: str, seconds: float, address: str
    ) -> int:
        """Store a new session; returns its id."""
        return int(
            await self.pool.fetchval(
                Q["insert_session"], token_hash, user_id, csrf_token, seconds, address
            )
        )

    @translated
    async def session(self, token_hash: bytes, idle_seconds: float) -> Session | None:
        """The live session with this token hash (and mark it used), or None."""
        r = await self.pool.fetchrow(Q["touch_session"], token_hash, idle_seconds)
        if r is None:
            return None
        return Session(
            id=r["id"],
            csrf_token=r["csrf_token"],
            mode=r["mode"],
            expires_at=r["expires_at"],
            user=_user(r, "user_id"),
        )

    @translated
    async def revoke_session(self, session_id: int) -> None:
        """Log one session out."""
        await self.pool.execute(Q["revoke_session"], session_id)

    @translated
    async def revoke_user_sessions(self, user_id: int) -> int:
        """Log a user out everywhere; returns how many sessions ended."""
        return int(await self.pool.fetchval(Q["revoke_user_sessions"], user_id))

    @translated
    async def set_mode(self, session_id: int, mode: str) -> None:
        """The session shows test or live from now on."""
        await self.pool.execute(Q["set_session_mode"], session_id, mode)

    @translated
    async def save_view(self, user_id: int, mode: str, name: str, query: str) -> SavedView:
        """Save (or replace) a named view."""
        row = await self.pool.fetchrow(Q["insert_view"], user_id, mode, name, query)
        return SavedView(**dict(row))

    @translated
    async def views(self, user_id: int, mode: str) -> list[SavedView]:
        """A user's views of one mode, by name."""
        return [SavedView(**dict(r)) for r in await self.pool.fetch(Q["list_views"], user_id, mode)]

    @translated
    async def delete_view(self, user_id: int, mode: str, view_id: int) -> bool:
        """Delete one of the user's views; False if it was not there."""
        return await self.pool.fetchval(Q["delete_view"], user_id, mode, view_id) is not None
