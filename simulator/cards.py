"""The acquirer's card registry: a card number in, a token out; charges by token follow the card.

Test numbers (like the big acquirers' sandboxes): 4242424242424242 approves, 4000000000000002
declines with CARD_DECLINED, 4000000000009995 with INSUFFICIENT_FUNDS; any other number that
passes the Luhn check approves. Only this registry ever sees a number. TEST_TOKENS are
registered from the start.
"""

import secrets
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from simulator.validation import bad_request, read_model

DECLINES = {
    "4000000000000002": "CARD_DECLINED",
    "4000000000009995": "INSUFFICIENT_FUNDS",
}
# Tokens every simulator knows from the start, one per test number, so a demo customer can be
# made before the simulator runs (like the big acquirers' fixed test tokens).
TEST_TOKENS = {
    "card_test4242": "4242424242424242",
    "card_test0002": "4000000000000002",
    "card_test9995": "4000000000009995",
}
# What a charge with a token nobody issued gets.
UNKNOWN_TOKEN = "INVALID_CARD"
_BRANDS = (
    ("4", "visa"),
    ("51", "mastercard"),
    ("52", "mastercard"),
    ("53", "mastercard"),
    ("54", "mastercard"),
    ("55", "mastercard"),
    ("34", "amex"),
    ("37", "amex"),
)


class CardRequest(BaseModel):
    """Body of POST /acquirer/cards."""

    model_config = ConfigDict(strict=True, extra="forbid")

    number: str = Field(pattern=r"^[0-9]{12,19}$")
    exp_month: int = Field(alias="expMonth", ge=1, le=12)
    exp_year: int = Field(alias="expYear", ge=2000, le=2200)
    cvc: str = Field(pattern=r"^[0-9]{3,4}$")


@dataclass(frozen=True)
class Card:
    """A registered card: its decline reason (None approves), brand and last four digits."""

    decline: str | None
    brand: str
    last4: str


CARDS = web.AppKey("acquirer_cards", dict[str, Card])


def luhn_ok(number: str) -> bool:
    """The Luhn check every card number passes."""
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def brand_of(number: str) -> str:
    """The card's brand by its first digits."""
    return next((brand for head, brand in _BRANDS if number.startswith(head)), "unknown")


def verdict(app: web.Application, token: str | None) -> str | None:
    """What a charge with `token` gets: None (no token: the seeded rule), "APPROVED" or a
    decline reason."""
    if token is None:
        return None
    card = app[CARDS].get(token)
    if card is None:
        return UNKNOWN_TOKEN
    return card.decline or "APPROVED"


async def register(request: web.Request) -> web.Response:
    """POST /acquirer/cards: keep the card, answer its token, brand and last four digits."""
    req = await read_model(request, CardRequest)
    if not luhn_ok(req.number):
        raise bad_request("card number fails the Luhn check", "number")
    token = f"card_{secrets.token_hex(12)}"
    card = Card(DECLINES.get(req.number), brand_of(req.number), req.number[-4:])
    request.app[CARDS][token] = card
    return web.json_response({"token": token, "brand": card.brand, "last4": card.last4})


def setup_cards(app: web.Application) -> None:
    """Attach the card registry under /acquirer/cards."""
    app[CARDS] = {
        token: Card(DECLINES.get(number), brand_of(number), number[-4:])
        for token, number in TEST_TOKENS.items()
    }
    app.router.add_post("/acquirer/cards", register)
