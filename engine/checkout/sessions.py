"""Checkout sessions: open -> scanned -> confirmed | canceled | expired.

Each transition is a compare-and-set in the store: two phones confirming at once, or a confirm
racing a cancel or the expiry, end with exactly one of them applied and the others told why.
A confirm closes the session and stores its payment in one transaction, through the intake
(the same PENDING payment, worker, webhooks and history as any other), so one session makes
at most one payment whatever the clicks, devices or retries. Expiry is a compare-and-set
too, made lazily by whoever reads a session past its time, and by the worker's sweep.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from engine import errors, ids
from engine.models import NewPayment, Payment, Status
from engine.payments import intake
from engine.store.checkout import Closed, NewSession, Session, SessionMoved
from engine.store.customers import Card, Customer
from engine.store.payments import NewRow
from engine.store.repository import Repository

log = structlog.get_logger()

OPEN = frozenset({"open", "scanned"})
# Why a customer's confirm or cancel changed nothing, by the session's status.
REFUSALS = {
    "expired": "session_expired",
    "canceled": "session_canceled",
    "confirmed": "already_confirmed",
}


def _random(bits: int, width: int) -> str:
    return ids.base62(int.from_bytes(secrets.token_bytes(bits // 8), "big"), width=width)


def is_final(session: Session) -> bool:
    """True once the server has committed the session's end: canceled, expired, or its
    payment's final state."""
    return is_final_state(session.status, session.payment_status)


def is_final_state(status: str, payment_status: str | None) -> bool:
    """is_final for a session status and its payment's status (None: no payment)."""
    if status in ("canceled", "expired"):
        return True
    return payment_status in _FINAL_PAYMENT


_FINAL_PAYMENT = frozenset(s.value for s in Status if s.is_final)


def outcome(session: Session) -> dict[str, Any] | None:
    """{result, code} once final (see is_final), else None."""
    if session.status == "canceled":
        return {"result": "failure", "code": "canceled_by_customer"}
    if session.status == "expired":
        return {"result": "failure", "code": "expired"}
    if not is_final(session):
        return None
    if session.payment_status == Status.SUCCESS:
        return {"result": "success", "code": None}
    # A payment the customer left at the provider's page (ACTION_EXPIRED) says action_expired.
    reason = session.payment_fail_reason
    return {"result": "failure", "code": reason.lower() if reason else "declined"}


async def create(repo: Repository, new: NewSession) -> tuple[Session, bool]:
    """An open session, or the one this idempotency key (or order) made already.

    The same request again is a replay (False); a different request under the same key or
    order raises IdempotencyConflict. An order the merchant already has a payment for is
    refused the same way: its payment would collide.
    """
    taken = await repo.payments.payment_by_order(new.mid, new.order_id, new.mode)
    if taken is not None:
        raise errors.IdempotencyConflict(new.order_id, taken.tid)
    public_id = f"cs_{_random(128, 22)}"
    client_secret = f"{public_id}_secret_{_random(192, 33)}"
    made = await repo.checkout.create(new, public_id, client_secret)
    if made is None:
        found = await repo.checkout.existing(new.mid, new.mode, new.order_id, new.idempotency_key)
        field = "orderId" if new.idempotency_key is None else "Idempotency-Key"
        existing = await repo.checkout.session(found) if found else None
        if existing is None:  # the key is new but the order is another session's
            raise errors.IdempotencyConflict(new.order_id, found or "another session")
        if existing.request_digest != new.request_digest:
            key = new.idempotency_key or new.order_id
            raise errors.IdempotencyConflict(key, existing.public_id, field=field)
        log.info("checkout.replayed", session=existing.public_id)
        return await _fresh(repo, existing), False
    log.info("checkout.created", session=public_id, order_id=new.order_id, amount=new.amount)
    session = await repo.checkout.session(public_id)
    assert session is not None
    return session, True


async def read(repo: Repository, public_id: str) -> Session | None:
    """A session as it is now: one past its time is expired first (compare-and-set)."""
    session = await repo.checkout.session(public_id)
    return await _fresh(repo, session) if session else None


async def _fresh(repo: Repository, session: Session) -> Session:
    if session.status in OPEN and session.expires_at <= datetime.now(UTC):
        if await repo.checkout.expire(session.public_id):
            log.info("checkout.expired", session=session.public_id, by="read")
        again = await repo.checkout.session(session.public_id)
        assert again is not None
        return again
    return session


@dataclass(frozen=True, slots=True)
class Result:
    """What a customer's confirm or cancel did: the session after it, and why not if not."""

    session: Session
    changed: bool
    reason: str | None = None
    payment: Payment | None = None


async def scan(repo: Repository, session: Session, customer: Customer) -> Session:
    """The app opened the session: open -> scanned (only the first time)."""
    if session.status == "open" and await repo.checkout.scan(session.public_id, customer.id):
        log.info("checkout.scanned", session=session.public_id, customer=customer.public_id)
        again = await read(repo, session.public_id)
        assert again is not None
        return again
    return session


async def _refused(repo: Repository, public_id: str, action: str) -> Result:
    session = await read(repo, public_id)
    assert session is not None
    reason = REFUSALS.get(session.status, "session_expired")
    log.info("checkout.refused", session=public_id, action=action, reason=reason)
    return Result(session, False, reason)


async def cancel(
    repo: Repository, public_id: str, customer: Customer, session: Session | None = None
) -> Result:
    """open|scanned -> canceled; anything else changes nothing and says why.

    `session`: the caller's read of it just before, if it has one: the answer is then that
    read with what the compare-and-set wrote, and the session is not read again.
    """
    closed = await repo.checkout.cancel(public_id, customer.id)
    if closed is None:
        return await _refused(repo, public_id, "cancel")
    log.info("checkout.canceled", session=public_id, customer=customer.public_id)
    if session is None:
        session = await read(repo, public_id)
        assert session is not None
        return Result(session, True)
    return Result(_closed(session, closed), True)


def _closed(session: Session, closed: Closed, payment: Payment | None = None) -> Session:
    """`session` as its compare-and-set left it (with the payment it made, if any)."""
    after = dataclasses.replace(
        session,
        status=closed.status,
        version=closed.version,
        closed_at=closed.closed_at,
        customer_id=closed.customer_id,
        updated_at=closed.updated_at,
    )
    if payment is None:
        return after
    return dataclasses.replace(
        after,
        payment_tid=payment.tid,
        payment_status=str(payment.status),
        payment_approval_no=payment.approval_no,
        payment_fail_reason=payment.fail_reason,
        payment_refunded_amount=payment.refunded_amount,
        payment_provider=payment.provider,
        payment_action_url=payment.action_url,
    )


class _SessionWriter:
    """Where intake.accept writes a session's payment: with the session's compare-and-set."""

    def __init__(
        self, repo: Repository, public_id: str, customer: Customer | None, card: Card | None
    ) -> None:
        self.repo = repo
        self.public_id = public_id
        self.customer = customer
        self.card = card
        self.closed: Closed | None = None  # what the compare-and-set wrote, once it did

    def insert_payment(
        self, new: NewPayment, *, public_id: str, tid: str, default_webhook_url: str
    ) -> Awaitable[Payment | None]:
        return self._insert(NewRow(new, public_id, tid, default_webhook_url))

    async def _insert(self, row: NewRow) -> Payment | None:
        customer_id = self.customer.id if self.customer else None
        card_token = self.card.token if self.card else None
        done = await self.repo.checkout.confirm(self.public_id, customer_id, card_token, row)
        if done is None:
            return None
        payment, self.closed = done
        return payment

    def payment_by_order(self, mid: str, order_id: str, mode: str) -> Awaitable[Payment | None]:
        return self.repo.payments.payment_by_order(mid, order_id, mode)


async def confirm(
    repo: Repository,
    public_id: str,
    customer: Customer,
    card: Card,
    *,
    snowflake: ids.Snowflake,
    tid_prefix: str,
    default_webhook_url: str,
    session: Session | None = None,
) -> Result:
    """open|scanned -> confirmed with exactly one PENDING payment on the customer's card.

    A session that moved on (confirmed by another phone, canceled, expired) changes nothing.
    `session`: the caller's read of it just before, if it has one (it is not read again: the
    compare-and-set decides, and the answer is that read with what the confirm wrote).
    """
    if session is None or session.public_id != public_id:
        session = await read(repo, public_id)
    if session is None:
        raise errors.PaymentError(f"no checkout session {public_id!r}")
    if session.status not in OPEN:
        return await _refused(repo, public_id, "confirm")
    digest = {"checkoutSession": public_id, "amount": session.amount, "currency": session.currency}
    new = _payment_of(
        session,
        customer=session.customer_ref or customer.public_id,
        digest=digest,
        actor=f"customer:{customer.public_id}",
    )
    return await _pay(
        repo,
        session,
        new,
        _SessionWriter(repo, public_id, customer, card),
        ("confirm", "checkout.confirmed"),
        snowflake=snowflake,
        tid_prefix=tid_prefix,
        default_webhook_url=default_webhook_url,
        customer=customer.public_id,
        card=card.last4,
    )


def _payment_of(
    session: Session,
    *,
    customer: str,
    digest: dict[str, Any],
    actor: str,
    provider: str = "card",
) -> NewPayment:
    """The payment a session makes: its order, amount and mode, the session named in the echo."""
    return NewPayment(
        mid=session.mid,
        order_id=session.order_id,
        user_public_id=customer,
        amount=session.amount,
        currency=session.currency,
        echo={"checkoutSessionId": session.public_id, "orderId": session.order_id},
        webhook_url=None,
        request_digest=intake.request_digest(digest),
        mode="test" if session.mode == "test" else "live",
        provider=provider,
        order_name=session.order_name,
        actor=actor,
    )


async def _pay(
    repo: Repository,
    session: Session,
    new: NewPayment,
    writer: _SessionWriter,
    names: tuple[str, str],
    *,
    snowflake: ids.Snowflake,
    tid_prefix: str,
    default_webhook_url: str,
    **fields: str,
) -> Result:
    """The session's one payment, through the intake with the session's compare-and-set:
    refused if the session moved on meanwhile or its order is taken. `names`: the action (for
    a refusal) and the event logged with `fields` when it is made."""
    action, event = names
    try:
        accepted = await intake.accept(
            writer,
            new,
            snowflake=snowflake,
            tid_prefix=tid_prefix,
            default_webhook_url=default_webhook_url,
        )
    except SessionMoved:
        return await _refused(repo, session.public_id, action)
    except errors.IdempotencyConflict:
        log.warning("checkout.order_taken", session=session.public_id, order_id=session.order_id)
        return Result(session, False, "order_taken")
    log.info(event, session=session.public_id, tid=accepted.payment.tid, **fields)
    # A replay of a payment made before wrote nothing now; a hosted payment's answer should
    # show the provider's page if the worker has it already: both read the session again.
    if writer.closed is None or new.provider != "card":
        after = await read(repo, session.public_id)
        assert after is not None
        return Result(after, True, payment=accepted.payment)
    return Result(_closed(session, writer.closed, accepted.payment), True, payment=accepted.payment)


# Ways to pay a session from the merchant's page, at a provider's own payment page.
HOSTED_PROVIDERS = frozenset({"atom"})


async def pay_hosted(
    repo: Repository,
    public_id: str,
    provider: str,
    *,
    snowflake: ids.Snowflake,
    tid_prefix: str,
    default_webhook_url: str,
) -> Result:
    """open|scanned -> confirmed with one PENDING payment through `provider`'s hosted page.

    The worker's AUTH then answers with the page (REQUIRES_ACTION) and the SDK sends the
    customer there. Same compare-and-set as a confirm from the app: at most one payment.
    """
    if provider not in HOSTED_PROVIDERS:
        raise errors.PaymentError(f"no hosted provider {provider!r}")
    session = await read(repo, public_id)
    if session is None:
        raise errors.PaymentError(f"no checkout session {public_id!r}")
    if session.status not in OPEN:
        return await _refused(repo, public_id, "pay")
    digest = {"checkoutSession": public_id, "amount": session.amount, "provider": provider}
    new = _payment_of(
        session,
        customer=session.customer_ref or "checkout",
        digest=digest,
        actor=f"checkout:{public_id}",
        provider=provider,
    )
    return await _pay(
        repo,
        session,
        new,
        _SessionWriter(repo, public_id, None, None),
        ("pay", "checkout.paying_hosted"),
        snowflake=snowflake,
        tid_prefix=tid_prefix,
        default_webhook_url=default_webhook_url,
        provider=provider,
    )


async def expire_due(repo: Repository, limit: int = 500) -> int:
    """The sweep: expire sessions whose time is up; how many it expired."""
    expired = await repo.checkout.expire_due(limit)
    for public_id in expired:
        log.info("checkout.expired", session=public_id, by="sweep")
    return len(expired)
