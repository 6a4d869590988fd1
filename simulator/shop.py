"""The demo shop: a merchant's website that takes payments with the Hamster SDK.

It plays the merchant's side of a checkout, as a real shop would: its server creates a checkout
session with the merchant's secret key (never sent to the browser), its page loads the SDK from
the gateway with the publishable key, and when the page hears `success` the server looks the
session and its payment up with the secret key before calling the order paid. It knows the
gateway only over HTTP, like any merchant.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from simulator.settings import SimulatorSettings

log = structlog.get_logger("simulator.shop")

STATIC = Path(__file__).resolve().parent / "shop_static"
# The SRI hash of the SDK file this shop was written against (sha384, base64): the browser
# refuses an SDK that is not byte for byte that file. Kept equal to the README's by a test.
SDK_INTEGRITY = "sha384-oBMaqFFY7WG8DPA/DOlJzLP8MgEhz+ziVlAz2WX+RqGcngHEr+rLXapChshIfZfy"
PRICE = 10_000
CURRENCY = "KRW"
PRODUCT = "Hamster wheel, 20 cm"


@dataclass(frozen=True)
class DemoKeys:
    """The demo merchant's two keys."""

    secret: str
    publishable: str


@dataclass
class ShopState:
    """The shop's orders (order id -> the session the gateway made for it)."""

    settings: SimulatorSettings
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None


SHOP = web.AppKey("shop", ShopState)


def demo_keys(settings: SimulatorSettings) -> DemoKeys | None:
    """Keys from settings, else from the demo merchant file `make run` writes; None if neither."""
    secret, publishable = settings.shop_secret_key, settings.shop_publishable_key
    if not (secret and publishable):
        try:
            saved = json.loads(Path(settings.shop_demo_file).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict):
            return None
        secret = secret or str(saved.get("apiKey") or "")
        publishable = publishable or str(saved.get("publishableKey") or "")
    return DemoKeys(secret, publishable) if secret and publishable else None


def page(title: str, body: str, lang: str = "en", head: str = "") -> web.Response:
    """One page of the shop, with its stylesheet."""
    text = f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · Hamster Goods</title>
<link rel="stylesheet" href="/shop/static/shop.css">{head}</head>
<body><header>Hamster Goods (demo shop)</header><main>{body}</main></body></html>"""
    return web.Response(text=text, content_type="text/html")


def language(request: web.Request) -> str:
    """Korean when the browser asks for it first, else English (the SDK follows the page)."""
    return "ko" if request.headers.get("Accept-Language", "").lower().startswith("ko") else "en"


async def home(request: web.Request) -> web.Response:
    """The product and its Pay button."""
    ready = demo_keys(request.app[SHOP].settings) is not None
    button = (
        '<form method="post" action="/shop/checkout"><button type="submit">Pay</button></form>'
        '<form method="post" action="/shop/checkout?method=atom">'
        '<button type="submit" class="secondary">Pay with Atom</button></form>'
        if ready
        else '<p class="error">No demo keys: run <code>make run</code> first.</p>'
    )
    return page(
        "Shop",
        f"""<section class="product"><div class="pic" aria-hidden="true">◎</div><div>
<h1>{html.escape(PRODUCT)}</h1><p class="price">₩{PRICE:,}</p>{button}</div></section>""",
        language(request),
    )


async def gateway(
    request: web.Request, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """Call the gateway's merchant API with the secret key; (status, JSON body or None)."""
    shop = request.app[SHOP]
    keys = demo_keys(shop.settings)
    if keys is None or shop.http is None:
        raise web.HTTPServiceUnavailable(text="no demo keys")
    url = f"{shop.settings.shop_engine_url.rstrip('/')}{path}"
    headers = {"Authorization": f"Bearer {keys.secret}"}
    async with shop.http.request(method, url, json=body, headers=headers) as resp:
        answer = await resp.json(content_type=None) if resp.content_length != 0 else None
        return resp.status, answer


async def checkout(request: web.Request) -> web.Response:
    """Create a checkout session for one wheel, then show the order's payment page
    (?method=atom: paid at Atom's own page rather than with the phone)."""
    order_id = f"shop-{secrets.token_hex(6)}"
    method = "atom" if request.query.get("method") == "atom" else ""
    base = f"{request.scheme}://{request.host}"
    status, answer = await gateway(
        request,
        "POST",
        "/api/checkout/sessions",
        {
            "amount": PRICE,
            "currency": CURRENCY,
            "orderId": order_id,
            "orderName": PRODUCT,
            "successUrl": f"{base}/shop/orders/{order_id}",
            "cancelUrl": f"{base}/shop/orders/{order_id}",
            "expiresInSeconds": request.app[SHOP].settings.shop_session_seconds,
        },
    )
    if status != 201 or not isinstance(answer, dict):
        log.warning("shop.session_refused", status=status, answer=answer)
        return page("Error", f'<p class="error">The gateway said {status}.</p>')
    request.app[SHOP].orders[order_id] = answer | {"method": method}
    raise web.HTTPSeeOther(f"/shop/orders/{order_id}")


async def order(request: web.Request) -> web.Response:
    """The order's payment page: the SDK mounts here; a reload resumes the same session."""
    shop = request.app[SHOP]
    order_id = request.match_info["order_id"]
    session = shop.orders.get(order_id)
    keys = demo_keys(shop.settings)
    if session is None or keys is None:
        raise web.HTTPNotFound(text="no such order")
    sdk = f"{shop.settings.shop_sdk_base.rstrip('/') or shop.settings.shop_engine_url.rstrip('/')}"
    sdk_url = f"{sdk}/sdk/v1/hamster.js"
    attrs = {
        "data-sdk": sdk_url,
        # ?pk= puts another key in the page: how the README shows the SDK's key errors.
        "data-publishable-key": request.query.get("pk", keys.publishable),
        "data-client-secret": str(session["clientSecret"]),
        "data-order-id": order_id,
        "data-method": str(session.get("method") or ""),
    }
    data = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
    # modulepreload fetches the SDK with its integrity checked; the import then uses it.
    head = (
        f'\n<link rel="modulepreload" href="{html.escape(sdk_url)}" '
        f'integrity="{SDK_INTEGRITY}" crossorigin="anonymous">'
        '\n<script type="module" src="/shop/static/shop.js"></script>'
    )
    body = f"""<h1>{html.escape(PRODUCT)}: ₩{PRICE:,}</h1>
<div id="checkout" {data}></div>
<p id="result" role="status" aria-live="polite"></p>
<details><summary>Events</summary><ol id="events"></ol></details>"""
    return page("Pay", body, language(request), head)


async def verify(request: web.Request) -> web.Response:
    """What the gateway says of the order, asked with the secret key (the page is not trusted)."""
    session = request.app[SHOP].orders.get(request.match_info["order_id"])
    if session is None:
        raise web.HTTPNotFound()
    status, answer = await gateway(request, "GET", f"/api/checkout/sessions/{session['id']}")
    if status != 200 or not isinstance(answer, dict):
        return web.json_response({"status": None}, status=502)
    tid = answer.get("paymentTid")
    payment_status = None
    if tid:
        got, payment = await gateway(request, "GET", f"/api/payments/{tid}")
        payment_status = payment.get("status") if got == 200 and isinstance(payment, dict) else None
    return web.json_response(
        {"status": answer.get("status"), "paymentTid": tid, "paymentStatus": payment_status}
    )


async def static(request: web.Request) -> web.FileResponse:
    """The shop's script and stylesheet."""
    name = request.match_info["name"]
    if name not in {"shop.js", "shop.css"}:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def _client(app: web.Application) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        app[SHOP].http = http
        yield


def setup_shop(app: web.Application, settings: SimulatorSettings) -> None:
    """Mount the shop under /shop."""
    app[SHOP] = ShopState(settings)
    app.cleanup_ctx.append(_client)
    app.router.add_get("/shop", home)
    app.router.add_post("/shop/checkout", checkout)
    app.router.add_get("/shop/orders/{order_id}", order)
    app.router.add_get("/shop/orders/{order_id}/verify", verify)
    app.router.add_get("/shop/static/{name}", static)
