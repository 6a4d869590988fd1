"""The customers' store: accounts, cards (the acquirer's token, brand and last four digits,
never a number) and signed-in sessions (a hash of the cookie's token)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.store.base import Store, translated
from engine.store.queries import load

Q = load("customers")


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer of the app."""

    id: int
    public_id: str
    email: str
    name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Card:
    """A registered card: what the acquirer handed back for it."""

    id: int
    token: str
    brand: str
    last4: str
    created_at: datetime


class Customers(Store):
    """Customers, their cards and their app sessions."""

    @translated
    async def create(
        self, public_id: str, email: str, password_hash: str, name: str | None
    ) -> Customer | None:
        """A new customer; None if the email is taken (in any case)."""
        row = await self.pool.fetchrow(Q["create_customer"], public_id, email, password_hash, name)
        return Customer(**dict(row)) if row else None

    @translated
    async def by_email(self, email: str) -> tuple[Customer, str] | None:
        """The customer with this email and its password hash."""
        row = await self.pool.fetchrow(Q["customer_by_email"], email)
        if row is None:
            return None
        values = dict(row)
        hashed = values.pop("password_hash")
        return Customer(**values), hashed

    @translated
    async def set_password(self, customer_id: int, password_hash: str) -> None:
        """Store a new hash of the customer's password."""
        await self.pool.execute(Q["set_password"], customer_id, password_hash)

    @translated
    async def add_card(self, customer_id: int, token: str, brand: str, last4: str) -> Card:
        """Keep a card the acquirer registered."""
        row = await self.pool.fetchrow(Q["add_card"], customer_id, token, brand, last4)
        return Card(**dict(row))

    @translated
    async def cards(self, customer_id: int) -> list[Card]:
        """The customer's cards, newest first."""
        return [Card(**dict(r)) for r in await self.pool.fetch(Q["cards"], customer_id)]

    @translated
    async def start_session(
        self, customer_id: int, token_hash: bytes, csrf: str, seconds: float
    ) -> None:
        """Remember a sign-in."""
        await self.pool.execute(Q["start_session"], customer_id, token_hash, csrf, seconds)

    @translated
    async def session_customer(self, token_hash: bytes) -> tuple[Customer, str] | None:
        """The signed-in customer and the session's CSRF token, while it lasts."""
        row = await self.pool.fetchrow(Q["session_customer"], token_hash)
        if row is None:
            return None
        values = dict(row)
        csrf = values.pop("csrf")
        return Customer(**values), csrf

    @translated
    async def end_session(self, token_hash: bytes) -> None:
        """Sign out."""
        await self.pool.execute(Q["end_session"], token_hash)
