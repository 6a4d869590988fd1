"""Customer accounts: sign-up, sign-in with a server-side session, and registered cards.

A session cookie holds 32 random bytes; the database keeps only their SHA-256, so a stolen
table signs nobody in. A card is registered with the acquirer, which keeps the number and
hands back a token: we store that token, the brand and the last four digits, nothing more.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from engine import ids, passwords
from engine.store.customers import Card, Customer, Customers

log = structlog.get_logger()

SESSION_SECONDS = 30 * 24 * 3600
# Customers' passwords: the strong profile (the checker spends the same work on an unknown
# email, so timing does not tell which emails have accounts).
PASSWORDS = passwords.Checker(passwords.hasher())


class CardRefused(Exception):
    """The acquirer would not register the card (its answer says why)."""


def token_hash(token: str) -> bytes:
    """What the database keeps of a session cookie."""
    return hashlib.sha256(token.encode()).digest()


def new_public_id() -> str:
    """A customer's public id: cus_ and 128 random bits."""
    return f"cus_{ids.base62(int.from_bytes(secrets.token_bytes(16), 'big'), width=22)}"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new sign-in: the cookie's token (shown once) and the form token."""

    customer: Customer
    token: str
    csrf: str


async def sign_up(
    store: Customers, email: str, password: str, name: str | None = None
) -> Customer | None:
    """A new customer; None if the email is taken."""
    hashed = await passwords.hash_password(PASSWORDS.ph, password)
    return await store.create(new_public_id(), email, hashed, name)


async def sign_in(store: Customers, email: str, password: str) -> SignedIn | None:
    """A session for the right email and password; None otherwise (which one is not said)."""
    found = await store.by_email(email)
    # An unknown email is checked against the decoy: the same work, and never a match.
    ok = await PASSWORDS.verify(found[1] if found else None, password)
    if found is None or not ok:
        log.info("customer.sign_in_failed")
        return None
    customer, hashed = found
    if PASSWORDS.needs_rehash(hashed):
        await store.set_password(customer.id, await passwords.hash_password(PASSWORDS.ph, password))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    await store.start_session(customer.id, token_hash(token), csrf, SESSION_SECONDS)
    log.info("customer.signed_in", customer=customer.public_id)
    return SignedIn(customer, token, csrf)


async def register_card(
    store: Customers,
    http: aiohttp.ClientSession,
    acquirer_url: str,
    customer: Customer,
    card: dict[str, Any],
) -> Card:
    """Register a card with the acquirer and keep its token, brand and last four digits.

    `card` ({number, expMonth, expYear, cvc}) goes to the acquirer only: it is never logged
    or stored here.
    """
    async with http.post(
        f"{acquirer_url}/cards", json=card, timeout=aiohttp.ClientTimeout(total=10)
    ) as resp:
        answer = await resp.json(content_type=None)
        if resp.status != 200 or not isinstance(answer, dict):
            raise CardRefused(str(answer.get("error") if isinstance(answer, dict) else resp.status))
    kept = await store.add_card(
        customer.id, str(answer["token"]), str(answer["brand"]), str(answer["last4"])
    )
    log.info("customer.card_registered", customer=customer.public_id, last4=kept.last4)
    return kept
