"""Fake Atom gateway: encrypted, signed AUTH, STATUS and refund calls, idempotent ledgers, faults.

Speaks the protocol described in engine/providers/atom_crypto.py, implemented here on its own
(stdlib PBKDF2 and hand-written padding) so that a mistake on one side shows up as a mismatch
instead of
being shared. The merchTxnId is the idempotency reference: it is decided once, by the card
acquirer's seeded rule, and every later AUTH or STATUS gets the stored answer.

Refunds follow the card acquirer's rules (simulator/refunds.py) against this ledger: REFUNDED
if the merchTxnId was charged and its refunds so far plus this one stay within the charge, else
rejected (OTS0600) with NOT_CAPTURED or EXCEEDS_CAPTURED. The refundTxnId is decided once and
every later REFUND or REFUND_STATUS gets the stored answer. The same faults apply.
"""

import hmac
import random
from collections.abc import Callable

import structlog
from aiohttp import web
from pydantic import ValidationError

from simulator import atom_page
from simulator.atom_ledger import AtomConfig, AtomState
from simulator.atom_wire import (
    NO_RECORD,
    AtomRefundRequest,
    AtomRequest,
    Json,
    MerchantKeys,
    RefundTxnType,
    RequestT,
    TxnType,
    sign,
    unseal,
)
from simulator.settings import SimulatorSettings
from simulator.validation import bad_request, read_model

log = structlog.get_logger("simulator.atom")


ATOM_STATE = web.AppKey("atom_state", AtomState)


def error(status: int, code: str) -> web.Response:
    """The simulator's JSON error answer."""
    return web.json_response({"error": code}, status=status)


async def read_envelope(request: web.Request) -> tuple[str, str]:
    """merchId and encData from a JSON or form body, or a JSON 400."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("malformed JSON", "body") from None
    else:
        body = dict(await request.post())
    if not isinstance(body, dict):
        raise bad_request("body must be an object", "body")
    merch_id, enc_data = body.get("merchId"), body.get("encData")
    if not isinstance(merch_id, str) or not isinstance(enc_data, str):
        raise bad_request("merchId and encData are required strings", "body")
    return merch_id, enc_data


async def read_request(
    request: web.Request, model: type[RequestT], txn_type: TxnType | RefundTxnType
) -> RequestT | web.Response:
    """The verified request, or the error answer (400 unreadable, 401 unknown or mis-signed)."""
    state = request.app[ATOM_STATE]
    k = state.keys
    merch_id, enc_data = await read_envelope(request)
    if merch_id != k.merch_id:
        return error(401, "unknown_merchant")
    try:
        req = model.model_validate(unseal(k.req_enc_key, enc_data))
    except (ValueError, ValidationError):  # ValidationError is a ValueError; named for readers
        return error(400, "bad_enc_data")
    # A request signed for another txnType is refused, so a signed inquiry cannot be replayed
    # as a charge or a refund.
    if req.merch_id != merch_id or req.txn_type != txn_type:
        return error(400, "bad_request")
    expected = sign(k.req_hash_key, *req.signed_parts(k))
    if not hmac.compare_digest(expected.encode(), req.signature.encode()):
        state.bad_signatures += 1
        log.info("atom.bad_signature", merch_txn_id=req.merch_txn_id, txn_type=txn_type)
        return error(401, "bad_signature")
    return req


def decided_once(
    state: AtomState,
    answers: dict[str, Json],
    key: str,
    decide: Callable[[], Json],
    same: Callable[[Json], bool],
) -> web.Response:
    """A charge or refund: the answer stored under `key` (409 unless `same`), or a new one."""
    # Draw every fault every time, so one rate's change does not shift the other's draws.
    errored, lost = state.roll(state.error_rate), state.roll(state.lost_answer_rate)
    if errored:
        state.errors += 1
        return error(503, "injected")
    # Looked up and decided with no await in between, so concurrent repeats see one decision.
    answer = answers.get(key)
    if answer is None:
        answer = decide()
    elif not same(answer):
        return error(409, "reference_conflict")
    if lost:
        state.lost_answers += 1
        return error(503, "injected")
    return web.json_response(state.sealed(answer))


def inquired(state: AtomState, found: Json | None, no_record: Json) -> web.Response:
    """An inquiry: the stored answer, or `no_record` (OTS0404) for one never decided."""
    if state.roll(state.error_rate):
        state.errors += 1
        return error(503, "injected")
    return web.json_response(state.sealed(no_record if found is None else found))


async def auth(request: web.Request) -> web.Response:
    """Charge by merchTxnId once; repeats get the stored answer (409 if the amount differs)."""
    state = request.app[ATOM_STATE]
    state.auth_calls += 1
    req = await read_request(request, AtomRequest, "AUTH")
    if isinstance(req, web.Response):
        return req
    if req.return_url and req.callback_url:
        # The hosted page: a token now; the customer decides on /atom/pay/{token}.
        page_base = f"{request.scheme}://{request.host}"
        return decided_once(
            state,
            state.answers,
            req.merch_txn_id,
            lambda: state.issue_token(req, page_base),
            lambda a: (a["amount"], a["currency"]) == (req.amount, req.currency),
        )
    return decided_once(
        state,
        state.answers,
        req.merch_txn_id,
        lambda: state.decide(req),
        lambda a: (a["amount"], a["currency"]) == (req.amount, req.currency),
    )


async def status(request: web.Request) -> web.Response:
    """Status inquiry: the stored answer, or OTS0404 for a merchTxnId never decided."""
    state = request.app[ATOM_STATE]
    state.status_calls += 1
    req = await read_request(request, AtomRequest, "STATUS")
    if isinstance(req, web.Response):
        return req
    no_record = {"merchTxnId": req.merch_txn_id, "atomTxnId": "", "statusCode": NO_RECORD}
    return inquired(
        state,
        state.answers.get(req.merch_txn_id),
        no_record | {"amount": req.amount, "currency": req.currency},
    )


async def refund(request: web.Request) -> web.Response:
    """Refund by refundTxnId once; repeats get the stored answer (409 if they differ)."""
    state = request.app[ATOM_STATE]
    state.refund_calls += 1
    req = await read_request(request, AtomRefundRequest, "REFUND")
    if isinstance(req, web.Response):
        return req
    asked = (req.merch_txn_id, req.amount, req.currency)
    return decided_once(
        state,
        state.refund_answers,
        req.refund_txn_id,
        lambda: state.decide_refund(req),
        lambda a: (a["merchTxnId"], a["amount"], a["currency"]) == asked,
    )


async def refund_status(request: web.Request) -> web.Response:
    """Refund inquiry: the stored answer, or OTS0404 for a refundTxnId never decided."""
    state = request.app[ATOM_STATE]
    state.refund_status_calls += 1
    req = await read_request(request, AtomRefundRequest, "REFUND_STATUS")
    if isinstance(req, web.Response):
        return req
    no_record = {
        "merchTxnId": req.merch_txn_id,
        "refundTxnId": req.refund_txn_id,
        "atomRefundId": "",
        "statusCode": NO_RECORD,
    }
    return inquired(
        state,
        state.refund_answers.get(req.refund_txn_id),
        no_record | {"amount": req.amount, "currency": req.currency},
    )


async def callback(request: web.Request) -> web.Response:
    """The body Atom would POST to the merchant's callback URL for a decided merchTxnId."""
    state = request.app[ATOM_STATE]
    answer = state.answers.get(request.match_info["merch_txn_id"])
    if answer is None:
        return error(404, "not_found")
    return web.json_response(state.sealed(answer))


async def ledger(request: web.Request) -> web.Response:
    """Approved charges, i.e. money actually taken (count), and refunds, money given back."""
    state = request.app[ATOM_STATE]
    return web.json_response(
        {"charges": state.charges, "count": len(state.charges), "refunds": state.refunds}
    )


async def list_refunds(request: web.Request) -> web.Response:
    """The refund ledger, money actually returned, with the refund call counters."""
    s = request.app[ATOM_STATE]
    return web.json_response(
        {
            "refunds": s.refunds,
            "count": len(s.refunds),
            "calls": s.refund_calls,
            "inquiries": s.refund_status_calls,
        }
    )


async def stats(request: web.Request) -> web.Response:
    """Counters: calls, decisions, refused signatures and injected faults."""
    s = request.app[ATOM_STATE]
    return web.json_response(
        {
            "authCalls": s.auth_calls,
            "statusCalls": s.status_calls,
            "approved": s.approved,
            "declined": s.declined,
            "badSignatures": s.bad_signatures,
            "tampered": s.tampered,
            "errors": s.errors,
            "lostAnswers": s.lost_answers,
            "refundCalls": s.refund_calls,
            "refundStatusCalls": s.refund_status_calls,
            "refunded": s.refunded,
            "refundsRejected": s.refunds_rejected,
        }
    )


async def update_config(request: web.Request) -> web.Response:
    """Change the knobs at run time; decisions change only for new merchTxnIds."""
    state = request.app[ATOM_STATE]
    state.update(await read_model(request, AtomConfig))
    return web.json_response(state.config())


async def reset(request: web.Request) -> web.Response:
    """Clear answers, ledgers and counters."""
    request.app[ATOM_STATE].reset()
    return web.json_response({"reset": True})


def setup_atom(app: web.Application, settings: SimulatorSettings) -> None:
    """Attach Atom state and routes under /atom to `app`."""
    app[ATOM_STATE] = AtomState(
        keys=MerchantKeys.from_settings(settings),
        success_rate=settings.success_rate,
        seed=settings.seed,
        rng=random.Random(settings.fault_seed or None),
        fault_seed=settings.fault_seed,
    )
    app.router.add_post("/atom/auth", auth)
    app.router.add_post("/atom/status", status)
    app.router.add_post("/atom/refund", refund)
    app.router.add_post("/atom/refund-status", refund_status)
    app.router.add_get("/atom/refunds", list_refunds)
    app.router.add_get("/atom/callbacks/{merch_txn_id}", callback)
    app.router.add_get("/atom/ledger", ledger)
    app.router.add_get("/atom/stats", stats)
    app.router.add_post("/atom/admin/config", update_config)
    app.router.add_post("/atom/admin/reset", reset)
    atom_page.setup(app, ATOM_STATE)
