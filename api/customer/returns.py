"""The return page: where a provider's hosted payment page (Atom's) sends the customer back.

GET /app/return/{mode}/{tid}?sig=…: the completion screen of a checkout session's payment,
rendered on the server: paid, not paid (and why), or still waiting for the provider's word
(the page reloads itself until the payment is final). `sig` is the MAC the worker put in the
return URL it gave the provider (engine/checkout/returns.py): a guessed or altered tid, the
other mode, or a payment no session made, gets the same 404 as one that does not exist. It
shows the merchant's name, the order, the amount and the outcome, and links back to the
session's successUrl or cancelUrl. Nothing here changes a payment.
"""

from __future__ import annotations

import re

from aiohttp import web

from api import problems, state
from api.customer import pages
from api.operations import documented, page
from engine.checkout import returns
from engine.models import Status
from engine.payments import actions

# A tid as the intake draws it; anything else cannot exist and costs no query.
TID = re.compile(r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$")
SIG = re.compile(r"^[A-Za-z0-9_-]{24}$")


def _not_found() -> problems.Problem:
    # One answer whatever was wrong (mode, tid, sig, or no such payment): nothing to probe.
    return problems.Problem(
        404, "Not Found", "No such payment.", slug="payment-not-found", field="tid"
    )


@documented(
    "getAppReturnByModeByTid",
    "The completion page a provider's hosted page sends the customer back to (its URL carries"
    " a MAC, `sig`; anything else is 404).",
    params=[
        {"name": "mode", "in": "path", "required": True, "schema": {"enum": ["test", "live"]}},
        {"name": "tid", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
    ],
    ok={200: page("The page.")},
    problems={404: "No such payment (`field` tid)."},
)
async def return_page(request: web.Request) -> web.Response:
    """GET /app/return/{mode}/{tid}: the completion screen."""
    settings = request.app[state.SETTINGS]
    mode, tid = request.match_info["mode"], request.match_info["tid"]
    sig = request.query.get("sig", "")
    if (
        mode not in ("test", "live")
        or not TID.match(tid)
        or not SIG.match(sig)
        or not returns.verified(settings.api_key_secret, mode, tid, sig)
    ):
        raise _not_found()
    found = await request.app[state.REPO].checkout.return_view(tid, mode)
    if found is None:
        raise _not_found()
    status = Status(found.status)
    if status is Status.SUCCESS or status in (Status.PARTIALLY_REFUNDED, Status.REFUNDED):
        result, back = "success", found.success_url
    elif status.is_final:
        result, back = "failure", found.cancel_url or found.success_url
    else:
        result, back = "waiting", None
    reason = found.fail_reason
    return pages.render(
        request,
        "return",
        {
            "result": result,
            "reason": "action_expired" if reason == actions.EXPIRED else (reason or "").lower(),
            "merchant": found.merchant_name,
            "order_name": found.order_name,
            "amount_text": pages.amount_text(found.amount, found.currency, pages.lang(request)),
            "tid": found.tid,
            "back": back,
        },
    )


ROUTES = [web.get("/app/return/{mode}/{tid}", return_page)]
