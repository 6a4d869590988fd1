"""Provider callbacks: Atom tells us a payment's outcome, signed and encrypted.

Anyone can reach this route, so nothing in a callback is believed before its signature
verifies; a bad one is refused (401) and counted. A verified callback settles a payment that
is not final yet by compare-and-set, exactly like a worker would; a repeat is harmless.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from api import body, problems, responses, state
from api.operations import UNAVAILABLE, documented
from api.schemas.callbacks import AtomCallback, AtomCallbackResult
from config.settings import Settings
from engine import metrics
from engine.models import Outcome, Status
from engine.payments import actions
from engine.providers import atom_messages as atom
from engine.providers.atom_crypto import AtomProtocolError, AtomSignatureError

log = structlog.get_logger()

PATH = "/api/providers/atom/callback"


def _refused() -> problems.Problem:
    # One answer for every failure (bad hex, padding, signature, not a final answer): a
    # distinct one would let a caller probe the decryption (a padding oracle).
    return problems.Problem(
        401,
        "Unauthorized",
        "the callback could not be verified",
        slug="bad-callback",
        field="encData",
    )


def _verified(settings: Settings, enc: str) -> tuple[atom.AtomCallback, list[str]]:
    """The callback, and the modes whose Atom credentials verify it.

    Live and test mode have their own credentials (the same in development): a callback
    signed with test mode's can settle only test payments.
    """
    found: atom.AtomCallback | None = None
    failure: Exception | None = None
    modes: list[str] = []
    for mode in ("live", "test"):
        try:
            found = atom.verify_callback(atom.credentials(settings, mode), enc)
        except AtomSignatureError as exc:
            failure = exc
            continue
        except AtomProtocolError as exc:
            failure = exc
            continue
        modes.append(mode)
    if found is None:
        if isinstance(failure, AtomSignatureError):
            metrics.SIGNATURE_FAILURES.labels("atom").inc()
            metrics.CALLBACKS_REFUSED.labels("atom", "signature").inc()
            log.error("atom.callback_signature_failed", merch_txn_id=failure.merch_txn_id)
            log.warning("Signature verification failed", orderId=failure.merch_txn_id)
        else:
            # What does not decrypt cannot have come from Atom either: not authenticated.
            metrics.CALLBACKS_REFUSED.labels("atom", "unreadable").inc()
            log.warning("atom.callback_unreadable", error=str(failure))
        raise _refused()
    return found, modes


@documented(
    "atomCallback",
    "Atom's signed callback with a payment's outcome (no API key: the"
    " signature authenticates it; a bad one is refused and counted).",
    public=True,
    body=AtomCallback,
    ok={200: (AtomCallbackResult, "Verified; the payment is (now) in the state it names.")},
    problems={
        400: "The body is not JSON.",
        401: "encData cannot be verified (one answer for every reason).",
        404: "No Atom payment with that tid, amount and currency.",
        409: "The payment is final with the other outcome.",
        422: "encData is missing or not a string.",
        503: UNAVAILABLE,
    },
)
async def atom_callback(request: web.Request) -> web.Response:
    """POST {"encData": "<hex>"}: verify, then settle the payment it names if not final."""
    settings = request.app[state.SETTINGS]
    sent = await body.read_model(request, settings, AtomCallback)
    cb, modes = _verified(settings, sent.encData)
    log.info(
        "Callback received",
        atomTxnId=cb.atom_txn_id,
        status=cb.status.value,
        orderId=cb.merch_txn_id,
    )
    outcome = Outcome(
        0,
        cb.status,
        approval_no=cb.atom_txn_id if cb.status is Status.SUCCESS else None,
        fail_reason=cb.reason or "DECLINED" if cb.status is Status.FAILED else None,
        payment_method=cb.payment_method,
    )
    repo = request.app[state.REPO]
    settled = await repo.payments.settle_from_callback(
        cb.merch_txn_id, "atom", cb.amount, cb.currency, outcome, "provider:atom", modes
    )
    if settled is not None:
        request.app[state.WAKERS].webhooks.poke()
        metrics.PAYMENTS_SETTLED.labels(settled.status.value, "atom").inc()
        log.info(
            "payment.settled", tid=settled.tid, status=settled.status.value, by="atom_callback"
        )
        return responses.send(
            AtomCallbackResult(tid=settled.tid, status=settled.status.value, settled=True),
            exclude_unset=True,
        )
    payment = await repo.payments.provider_payment(cb.merch_txn_id, "atom", modes)
    if payment is None or (payment.amount, payment.currency) != (cb.amount, cb.currency):
        raise problems.Problem(
            404,
            "Not Found",
            f"no atom payment {cb.merch_txn_id!r} like this",
            slug="payment-not-found",
            field="encData",
        )
    if payment.status.is_final and payment.status is not cb.status:
        # Signed by Atom, but the payment ended the other way first (we expired it, or two
        # answers disagree): never applied, never dropped. Recorded for a person.
        new = await repo.payments.record_late_callback(
            payment, "atom", outcome, cb.amount, cb.currency
        )
        metrics.ERRORS.labels("late_callback").inc()
        log.error(
            "atom.callback_flagged",
            tid=payment.tid,
            ours=payment.status.value,
            theirs=cb.status.value,
            atom_txn_id=cb.atom_txn_id,
            new=new,
        )
        if payment.fail_reason == actions.EXPIRED:
            # Atom's answer is acknowledged (it stops resending); the person takes it on.
            return responses.send(
                AtomCallbackResult(
                    tid=payment.tid, status=payment.status.value, settled=False, flagged=True
                ),
                exclude_unset=True,
            )
    if payment.status is not cb.status:
        # Two signed answers disagree: keep what we have and say so loudly.
        log.error(
            "atom.callback_conflict",
            tid=payment.tid,
            ours=payment.status.value,
            theirs=cb.status.value,
        )
        raise problems.Problem(
            409,
            "Conflict",
            f"payment {payment.tid} is {payment.status.value}",
            slug="state-conflict",
            field="encData",
            extra={"currentStatus": payment.status.value},
        )
    return responses.send(
        AtomCallbackResult(tid=payment.tid, status=payment.status.value, settled=False),
        exclude_unset=True,
    )


ROUTES = [web.post(PATH, atom_callback)]
