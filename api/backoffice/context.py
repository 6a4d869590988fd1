"""The back office's shared state: its keys on the app and on each request, and helpers
every handler uses (who is logged in, which merchant and mode, forms, rendering)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from api import state
from api.backoffice import i18n
from engine.passwords import Checker
from engine.store.accounts import AccountStore, Session, User
from engine.store.backoffice import BackofficeStore
from engine.store.recovery import RecoveryStore
from engine.store.reports import ReportsStore

PREFIX = "/backoffice"
ACCOUNTS = web.AppKey("backoffice_accounts", AccountStore)
CONSOLE = web.AppKey("backoffice_store", BackofficeStore)
CHECKER = web.AppKey("backoffice_checker", Checker)
REPORTS = web.AppKey("backoffice_reports", ReportsStore)
RECOVERY = web.AppKey("backoffice_recovery", RecoveryStore)
SESSION = web.RequestKey("backoffice_session", Session)
FORM = web.RequestKey("backoffice_form", MultiDictProxy[str])


class PageError(Exception):
    """An error page: status, a title and a sentence for people."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def session(request: web.Request) -> Session:
    """The logged-in session (the middleware refused the request without one)."""
    return request[SESSION]


def user(request: web.Request) -> User:
    """The logged-in user."""
    return request[SESSION].user


def merchant_scope(request: web.Request) -> tuple[str, str]:
    """(mid, mode) of a merchant user's pages: everything they show is scoped to both."""
    s = request[SESSION]
    assert s.user.mid is not None  # the middleware lets only merchant users reach these pages
    return s.user.mid, s.mode


def actor(request: web.Request) -> str:
    """How the history names what this user does."""
    return f"user:{user(request).email}"


def form(request: web.Request) -> MultiDictProxy[str]:
    """The posted form (read and checked by the middleware)."""
    return request[FORM]


def field(request: web.Request, name: str, *, required: bool = True, limit: int = 500) -> str:
    """One text field of the posted form, trimmed; PageError 422 when missing or too long."""
    value = form(request).get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise PageError(422, "Unprocessable Content", f"{name}: this field is required")
    if len(text) > limit:
        raise PageError(422, "Unprocessable Content", f"{name}: at most {limit} characters")
    if any(ord(c) < 32 and c not in "\t" for c in text):
        raise PageError(422, "Unprocessable Content", f"{name}: control characters are refused")
    return text


Query = Mapping[str, Any] | Sequence[tuple[str, str]] | None


def url(path: str, query: Query = None) -> str:
    """A back office URL."""
    tail = f"?{urlencode(query, doseq=True)}" if query else ""
    return f"{PREFIX}{path}{tail}"


def translator(request: web.Request) -> Callable[..., str]:
    """The words of the request's language."""
    return i18n.translator(i18n.language(request))


def money_of(request: web.Request) -> Callable[[int, str], str]:
    """Amounts as the request's language writes them."""
    lang = i18n.language(request)
    return lambda minor, currency: i18n.amount(minor, currency, lang)


def when_in(ts: datetime | None, zone: str) -> str:
    """A timestamp in `zone`, as pages show times."""
    return i18n.when(ts, zone)


def zone_of(request: web.Request, settings_zone: str) -> str:
    """The zone the user's times are shown in."""
    s = request.get(SESSION)
    return (s.user.time_zone if s else None) or settings_zone


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A page, with what every page needs: the words, the user, the mode, the CSRF token."""

    settings = request.app[state.SETTINGS]
    lang = i18n.language(request)
    s = request.get(SESSION)
    tz = zone_of(request, settings.backoffice_time_zone)
    base: dict[str, Any] = {
        "_": i18n.translator(lang),
        "lang": lang,
        "languages": i18n.LANGUAGES,
        "session": s,
        "user": s.user if s else None,
        "mode": s.mode if s else None,
        "csrf": s.csrf_token if s else context.get("csrf", ""),
        "zone": tz,
        "money": lambda minor, currency: i18n.amount(minor, currency, lang),
        "when": lambda ts: i18n.when(ts, tz),
        "url": url,
        "path": request.path,
        "here": request.path_qs,
        "notice": None,
    }
    response = aiohttp_jinja2.render_template(template, request, base | context, status=status)
    response.headers["Content-Language"] = lang
    return response


def redirect(path: str, query: Query = None) -> web.HTTPSeeOther:
    """303 to a back office page (after a form: the browser GETs it)."""
    return web.HTTPSeeOther(url(path, query))
