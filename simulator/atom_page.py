"""Atom's hosted payment page: the customer approves, declines, or walks away.

GET /atom/pay/{token} shows the amount with Approve and Decline. A choice decides the
payment (once), sends the signed, encrypted callback to the merchant's callbackUrl, and sends
the browser back to its returnUrl (303). Walking away is closing the page: nothing happens,
and STATUS keeps answering "token issued" until the token's time is up.

The callback fault (POST /atom/admin/config {"callback": ...}): "never" sends none, "twice"
sends it twice, "late" decides and sends it only after callback_delay_seconds (the browser
goes back at once, STATUS shows nothing meanwhile), "bad_signature" sends it mis-signed.
GET /atom/callbacks-sent lists every callback POST made; POST /atom/admin/send-late sends the
late ones now (tests need not wait out the delay).
"""

import asyncio
import html
import time

import aiohttp
import structlog
from aiohttp import web

from simulator.atom_ledger import AtomState
from simulator.atom_wire import Json

log = structlog.get_logger("simulator.atom")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Atom payment</title>
<style>
body {{ font: 16px system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; }}
.amount {{ font-size: 2rem; font-weight: 600; margin: 1rem 0; }}
form {{ display: inline; }} button {{ font: inherit; padding: .6rem 1.4rem; margin-right: .5rem; }}
.muted {{ color: #666; font-size: .9rem; }}
</style></head>
<body><h1>Atom</h1>{body}</body></html>"""


def _money(amount: str, currency: str) -> str:
    # Minor units: KRW and JPY have none; the others two decimals.
    value = int(amount)
    if currency in ("KRW", "JPY"):
        return f"{value:,} {currency}"
    return f"{value // 100:,}.{value % 100:02d} {currency}"


def _page(body: str, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(body=body), status=status, content_type="text/html")


def _expired(state: AtomState, token: Json) -> bool:
    return time.time() - float(token["issuedAt"]) >= state.token_ttl_seconds


async def _post_callback(
    state: AtomState, token: Json, answer: Json, *, kind: str, tamper: bool = False
) -> None:
    url = str(token["callbackUrl"])
    body = {"merchId": state.keys.merch_id, **state.sealed(answer, tamper=tamper)}
    status: int | None = None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=10)) as resp,
        ):
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("atom.callback_failed", url=url, error=str(exc))
    state.callbacks_sent.append(
        {"merchTxnId": answer["merchTxnId"], "url": url, "kind": kind, "status": status}
    )
    log.info("atom.callback_sent", merch_txn_id=answer["merchTxnId"], kind=kind, status=status)


async def _late(state: AtomState, token_id: str, approve: bool, delay: float) -> None:
    await asyncio.sleep(delay)
    await _send_late(state, token_id, approve)


async def _send_late(state: AtomState, token_id: str, approve: bool) -> None:
    """Decide a late choice and call back, once (the timer or POST /atom/admin/send-late)."""
    if state.late.pop(token_id, None) is None:
        return
    answer = state.choose(token_id, approve)
    await _post_callback(state, state.tokens[token_id], answer, kind="late")


async def _decide(state: AtomState, token_id: str, token: Json, approve: bool) -> None:
    """Record the customer's choice and call the merchant back as the fault says."""
    token["choice"] = "approved" if approve else "declined"
    fault = state.callback
    if fault == "late":
        state.late[token_id] = approve
        task = asyncio.create_task(_late(state, token_id, approve, state.callback_delay_seconds))
        state.pending.add(task)
        task.add_done_callback(state.pending.discard)
        return
    answer = state.choose(token_id, approve)
    if fault == "never":
        return
    await _post_callback(state, token, answer, kind=fault, tamper=fault == "bad_signature")
    if fault == "twice":
        await _post_callback(state, token, answer, kind="twice")


def _payment_page(state: AtomState, token_id: str, token: Json) -> web.Response:
    """The page of a token: the amount with Approve and Decline, or why it cannot be paid."""
    amount = html.escape(_money(token["amount"], token["currency"]))
    ref = html.escape(str(token["merchTxnId"]))
    if token["choice"] is not None:
        return _page(f"<p>This payment was {html.escape(token['choice'])} already.</p>")
    if _expired(state, token):
        return _page("<p>This payment has expired. Nothing was charged.</p>", 410)
    action = f"/atom/pay/{html.escape(token_id)}"
    return _page(
        f'<p class="muted">Merchant reference {ref}</p>'
        f'<p class="amount" data-amount>{amount}</p>'
        f'<form method="post" action="{action}/approve"><button type="submit">Approve</button>'
        f'</form><form method="post" action="{action}/decline">'
        f'<button type="submit">Decline</button></form>'
        f'<p class="muted">Or close this page to walk away.</p>'
    )


def setup(app: web.Application, key: web.AppKey[AtomState]) -> None:
    """Attach the payment page's routes to the app holding Atom's state under `key`."""

    def found(request: web.Request) -> tuple[AtomState, str, Json] | None:
        state = request.app[key]
        token_id = request.match_info["token"]
        token = state.tokens.get(token_id)
        return None if token is None else (state, token_id, token)

    async def page(request: web.Request) -> web.Response:
        got = found(request)
        return _page("<p>No such payment.</p>", 404) if got is None else _payment_page(*got)

    async def choose(request: web.Request, approve: bool) -> web.Response:
        got = found(request)
        if got is None:
            return _page("<p>No such payment.</p>", 404)
        state, token_id, token = got
        if token["choice"] is None:
            if _expired(state, token):
                return _page("<p>This payment has expired. Nothing was charged.</p>", 410)
            await _decide(state, token_id, token, approve)
        raise web.HTTPSeeOther(str(token["returnUrl"]))

    async def approve(request: web.Request) -> web.Response:
        return await choose(request, True)

    async def decline(request: web.Request) -> web.Response:
        return await choose(request, False)

    async def sent(request: web.Request) -> web.Response:
        return web.json_response({"callbacks": request.app[key].callbacks_sent})

    async def send_late(request: web.Request) -> web.Response:
        """Decide and send every late callback now, rather than after its delay."""
        state = request.app[key]
        waiting = list(state.late.items())
        for token_id, approve in waiting:
            await _send_late(state, token_id, approve)
        return web.json_response({"sent": len(waiting)})

    async def cancel_late(app: web.Application) -> None:
        for task in list(app[key].pending):
            task.cancel()

    app.on_cleanup.append(cancel_late)
    app.router.add_get("/atom/pay/{token}", page)
    app.router.add_post("/atom/pay/{token}/approve", approve)
    app.router.add_post("/atom/pay/{token}/decline", decline)
    app.router.add_get("/atom/callbacks-sent", sent)
    app.router.add_post("/atom/admin/send-late", send_late)
