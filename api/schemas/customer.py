"""The customer app's bodies: a session's payment page, what a confirm or cancel did, history.

The app's pages render the same bodies (as their JSON), so a page and its JSON cannot differ.
Some members are snake_case on the wire (amount_text, return_url, created_text): the app has
always written them so, and its pages and tests read them by those names.
"""

from __future__ import annotations

from pydantic import Field

from api.schemas.checkout import SessionOutcome, SessionPayment, SessionStatus
from api.schemas.common import Instant, Response
from engine.models import RefundStatus, Status


class AppSession(Response):
    """A session as the app's payment page shows it, with its amount as people read it."""

    public_id: str = Field(alias="id")
    status: SessionStatus
    merchant_name: str
    order_name: str
    amount: int = Field(gt=0)
    currency: str
    amount_text: str
    expires_at: Instant
    payment: SessionPayment | None
    outcome: SessionOutcome | None
    final: bool


class Card(Response):
    """The customer's card, as far as the page names it."""

    brand: str
    last4: str = Field(pattern=r"^[0-9]{4}$")


class PayPage(Response):
    """What the payment page shows."""

    session: AppSession
    amount_text: str = Field(alias="amount_text")
    card: Card | None
    payment: SessionPayment | None
    outcome: SessionOutcome | None
    # Why the last action was refused (no_card, a closed session...), on the page after it.
    error: str | None
    # Where "back to the shop" goes once final: the session's successUrl or cancelUrl.
    return_url: str | None = Field(alias="return_url")


class PayData(PayPage):
    """GET /app/api/pay/{id}: the payment page's data, and the form token its POSTs carry."""

    csrf: str


class ActionResult(Response):
    """What a confirm or a cancel did: 200 when it changed the session, 409 (and why) if not."""

    changed: bool
    reason: str | None
    session: AppSession


class HistoryRefund(Response):
    """A refund made on a payment of the history."""

    amount: int = Field(gt=0)
    amount_text: str = Field(alias="amount_text")
    status: RefundStatus
    created_text: str = Field(alias="created_text")


class HistoryItem(Response):
    """A payment of the customer's, any merchant's, with its refunds."""

    merchant_name: str
    order_name: str
    amount: int = Field(gt=0)
    currency: str
    amount_text: str = Field(alias="amount_text")
    status: Status
    created_text: str = Field(alias="created_text")
    requested_at: Instant = Field(alias="createdAt")
    tid: str
    refunded_amount: int = Field(ge=0)
    refunds: list[HistoryRefund]


class History(Response):
    """GET /app/api/history: the customer's payments across merchants, newest first."""

    items: list[HistoryItem]
