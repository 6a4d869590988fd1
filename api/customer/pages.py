"""What the customer app's pages share: templates, language, amounts, the signed-in customer.

Templates live in api/web/templates/customer/ and are rendered with aiohttp_jinja2 on this
module's own app key, so the back office's template setup and ours never collide.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from babel.numbers import format_currency

from api import problems, state
from engine import money
from engine.customers import accounts
from engine.store.customers import Customer

TEMPLATES = web.AppKey("customer_templates", jinja2.Environment)
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "web" / "templates"
COOKIE = "hamster_app"
LOGIN_COOKIE = "hamster_app_login"
SIGNED_IN = web.RequestKey("customer", tuple)


def setup(app: web.Application) -> None:
    """The app's template environment (autoescaped)."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(default=True),
        app_key=TEMPLATES,
    )


def lang(request: web.Request) -> str:
    """ "ko" or "en", by the first language of Accept-Language that we speak."""
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("ko"):
            return "ko"
        if tag.startswith("en"):
            return "en"
    return "en"


def amount_text(amount: int, currency: str, language: str) -> str:
    """An amount in minor units as people read it: ₩10,000, $12.50."""
    exponent = money.minor_unit_exponent(currency)
    major = Decimal(amount).scaleb(-exponent)
    locale = "ko_KR" if language == "ko" else "en_US"
    return str(format_currency(major, currency, locale=locale))


def render(
    request: web.Request, name: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """customer/<name>.html with what every page takes: lang, csrf, customer."""
    signed = request.get(SIGNED_IN)
    base: dict[str, Any] = {
        "lang": lang(request),
        "csrf": signed[1] if signed else "",
        "customer": {"email": signed[0].email} if signed else None,
    }
    response = aiohttp_jinja2.render_template(
        f"customer/{name}.html", request, base | context, app_key=TEMPLATES, status=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def signed_in(request: web.Request) -> tuple[Customer, str] | None:
    """The customer behind the cookie and the session's CSRF token, if signed in."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    found = await request.app[state.REPO].customers.session_customer(accounts.token_hash(token))
    if found is not None:
        request[SIGNED_IN] = found
    return found


def check_csrf(request: web.Request, expected: str, form: Any) -> None:
    """A POST must carry the session's form token (field `csrf` or header X-CSRF-Token)."""
    given = request.headers.get("X-CSRF-Token") or (form.get("csrf") if form else None) or ""
    if not isinstance(given, str) or not secrets.compare_digest(given, expected):
        raise problems.Problem(
            403,
            "Forbidden",
            "missing or wrong CSRF token",
            slug="csrf",
            field="csrf",
            extra={"code": "csrf"},
        )


def safe_next(raw: Any) -> str:
    """Where to go after signing in: a path of the app only (no open redirect)."""
    if isinstance(raw, str) and raw.startswith("/app/") and "//" not in raw and "\\" not in raw:
        return raw
    return "/app/"
