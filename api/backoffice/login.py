"""Logging in and out, and the switches every page carries (mode, language)."""

from __future__ import annotations

import secrets

from aiohttp import web

from api import state
from api.backoffice import context, i18n
from api.backoffice.context import PREFIX, PageError
from api.backoffice.middleware import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from engine.accounts import sessions

_YEAR = 365 * 24 * 3600


def _safe_next(raw: str | None, fallback: str) -> str:
    """Where to go after a form: only a back office path (never another site)."""
    if raw and raw.startswith(f"{PREFIX}/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return fallback


def _cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, age: int
) -> None:
    """A cookie of the back office: HttpOnly, SameSite=Lax, Secure in production."""
    production = request.app[state.SETTINGS].env == "production"
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PREFIX,
        httponly=True,
        secure=production,
        samesite="Lax",
    )


def _home(request: web.Request) -> str:
    s = request.get(context.SESSION)
    return context.url("/console/recovery" if s and s.user.is_operator else "/payments")


async def root(request: web.Request) -> web.Response:
    """GET /backoffice/: the first page of the user's role."""
    raise web.HTTPSeeOther(_home(request))


def _login_page(request: web.Request, error: str | None, status: int) -> web.Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    nxt = _safe_next(request.query.get("next") or context.form(request).get("next"), "")
    response = context.render(
        request, "login.html", {"error": error, "csrf": token, "next": nxt}, status
    )
    _cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    """GET /backoffice/login."""
    return _login_page(request, None, 200)


async def login(request: web.Request) -> web.Response:
    """POST /backoffice/login: Email and Password; a session cookie, or why not."""
    _ = i18n.translator(i18n.language(request))
    form = context.form(request)
    email = form.get("email", "")
    password = form.get("password", "")
    settings = request.app[state.SETTINGS]
    result = await sessions.log_in(
        request.app[context.ACCOUNTS],
        request.app[context.CHECKER],
        settings,
        email[:1000],
        password,
        request.remote or "unknown",
    )
    if isinstance(result, sessions.Throttled):
        page = _login_page(
            request, _("Too many attempts. Try again in {n} seconds.", n=result.retry_after), 429
        )
        page.headers["Retry-After"] = str(result.retry_after)
        return page
    if result is None:
        return _login_page(request, _("Wrong email or password."), 401)
    home = context.url("/console/recovery" if result.user.is_operator else "/payments")
    target = _safe_next(form.get("next"), home)
    if result.user.is_operator != target.startswith(f"{PREFIX}/console"):
        target = home
    response = web.HTTPSeeOther(target)
    _cookie(
        response,
        request,
        SESSION_COOKIE,
        result.token,
        int(settings.backoffice_session_hours * 3600),
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    raise response


def _logged_out() -> web.HTTPSeeOther:
    response = web.HTTPSeeOther(context.url("/login"))
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /backoffice/logout: this session ends."""
    await request.app[context.ACCOUNTS].revoke_session(context.session(request).id)
    raise _logged_out()


async def logout_everywhere(request: web.Request) -> web.Response:
    """POST /backoffice/logout-everywhere: every session of this user ends, on every device."""
    await request.app[context.ACCOUNTS].revoke_user_sessions(context.user(request).id)
    raise _logged_out()


async def switch_mode(request: web.Request) -> web.Response:
    """POST /backoffice/mode: show test or live from now on."""
    mode = context.form(request).get("mode")
    if mode not in ("test", "live"):
        raise PageError(422, "Unprocessable Content", "mode: must be test or live")
    await request.app[context.ACCOUNTS].set_mode(context.session(request).id, mode)
    back = _safe_next(context.form(request).get("next"), _home(request)).split("?")[0]
    if back.startswith(f"{PREFIX}/payments/"):  # that payment is of the other mode
        back = context.url("/payments")
    raise web.HTTPSeeOther(back)


async def switch_language(request: web.Request) -> web.Response:
    """POST /backoffice/language: English or Korean from now on (a cookie)."""
    lang = context.form(request).get("lang")
    if lang not in i18n.LANGUAGES:
        raise PageError(422, "Unprocessable Content", "lang: must be en or ko")
    response = web.HTTPSeeOther(_safe_next(context.form(request).get("next"), _home(request)))
    _cookie(response, request, i18n.LANG_COOKIE, lang, _YEAR)
    raise response


def add_routes(app: web.Application) -> None:
    """Mount the login, logout and switch routes."""
    app.add_routes(
        [
            web.get(f"{PREFIX}/", root),
            web.get(f"{PREFIX}/login", login_form),
            web.post(f"{PREFIX}/login", login),
            web.post(f"{PREFIX}/logout", logout),
            web.post(f"{PREFIX}/logout-everywhere", logout_everywhere),
            web.post(f"{PREFIX}/mode", switch_mode),
            web.post(f"{PREFIX}/language", switch_language),
        ]
    )
