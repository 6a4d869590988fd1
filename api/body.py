"""Reading a request body: in time, in an encoding we decode, as JSON in UTF-8.

Every handler that reads a body reads it here, so each route refuses the same things the same
way: an unsupported Content-Encoding or a Content-Type that is not JSON in UTF-8 (415, before
a byte is read), a body that does not arrive within `body_read_timeout_seconds` (408), one
that does not decode as its Content-Encoding says (400), one that is not strict JSON (400).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api import models, problems, state
from config.settings import Settings

# What aiohttp decodes for us; anything else would reach the JSON parser still compressed.
ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})

# A marker: the route needs a body (no empty body allowed).
_REQUIRED: Any = object()

M = TypeVar("M", bound=BaseModel)


def _unsupported(field: str, detail: str) -> problems.Problem:
    return problems.Problem(
        415, "Unsupported Media Type", detail, slug="unsupported-media-type", field=field
    )


def unsupported_encoding() -> problems.Problem:
    """415 for a Content-Encoding we do not decode."""
    return _unsupported("Content-Encoding", "send the body uncompressed, or with gzip or deflate")


def check_encoding(request: web.Request) -> None:
    """415 unless the body is sent as is, gzip or deflate."""
    if request.headers.get("Content-Encoding", "").strip().lower() not in ENCODINGS:
        raise unsupported_encoding()


def is_json(content_type: str | None) -> bool:
    """True for `application/json` or `application/*+json`, no charset or charset UTF-8."""
    if content_type is None:
        return False
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    if not (
        mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def check_type(request: web.Request) -> None:
    """415 unless the Content-Type says JSON in UTF-8."""
    if not is_json(request.headers.get("Content-Type")):
        raise _unsupported(
            "Content-Type", "send the body as Content-Type: application/json (UTF-8)"
        )


async def read(request: web.Request, timeout: float) -> bytes:
    """The raw body, decoded from its Content-Encoding; 408 past `timeout`, 400 if undecodable."""
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise problems.Problem(
            408,
            "Request Timeout",
            "the request body did not arrive in time",
            slug="body-timeout",
            field="body",
        ) from None
    except web.RequestPayloadError:
        # A gzip body that is not gzip, a broken chunk, a body cut short.
        raise problems.Problem(
            400,
            "Bad Request",
            "the body could not be read as its headers describe it",
            slug="unreadable-body",
            field="body",
        ) from None


async def read_json(request: web.Request, settings: Settings, *, empty: Any = _REQUIRED) -> Any:
    """The body as JSON; where the route allows no body, `empty` when none (or blank) is sent."""
    check_encoding(request)
    if empty is _REQUIRED:
        check_type(request)
    raw = await read(request, settings.body_read_timeout_seconds)
    if empty is not _REQUIRED:
        if not raw.strip():
            return empty
        check_type(request)
    return models.parse_json(raw)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


async def read_model(
    request: web.Request,
    settings: Settings,
    model: type[M],
    *,
    empty: Any = _REQUIRED,
    context: dict[str, Any] | None = None,
) -> M:
    """The body as a JSON object validated by `model` (with `context` for its validators).

    422 naming the first failing field, with every failure listed.
    """
    data = await read_json(request, settings, empty=empty)
    if not isinstance(data, dict):
        raise problems.validation("body", "must be a JSON object")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        errs = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise problems.validation(errs[0]["field"], errs[0]["message"], errs) from None


async def model_of(request: web.Request, model: type[M], *, empty_ok: bool = False) -> M:
    """`read_model` under the app's settings; `empty_ok`: no body (or a blank one) reads as {}."""
    settings = request.app[state.SETTINGS]
    if empty_ok:
        return await read_model(request, settings, model, empty={})
    return await read_model(request, settings, model)
