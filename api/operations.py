"""What the OpenAPI document says of each route, declared beside its handler.

A handler is marked with `@documented(...)`: its operationId, summary, success answers (each a
response model), the problems it may answer, its parameters and request body. The document
(api/ops/openapi.py) walks the routes actually registered and looks each handler up here, so a
route without an entry cannot be served undocumented, and the models the handler answers with
are the schemas the document shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from api.schemas.common import MAX_BIGINT, TID_PATTERN

REF = "#/components/schemas/{model}"
# The longest page of a list paged by `after` (an id) and `limit`.
MAX_PAGE = 500
JSON = "application/json"
PROBLEM = "application/problem+json"
HTML = "text/html"
EVENT_STREAM = "text/event-stream"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
# A success answer: its model and what it means (JSON), or the model, what it means and its
# media types (HTML: a page instead, when the caller does not ask for JSON; EVENT_STREAM:
# events whose data is the model), or an OpenAPI response object as is.
Reply = tuple[type[BaseModel], str] | tuple[type[BaseModel], str, Sequence[str]] | dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One route's entry in the document (see `documented`)."""

    id: str
    summary: str
    ok: Mapping[int, Reply]
    problems: Mapping[int, str | dict[str, Any]] = field(default_factory=dict)
    params: Sequence[dict[str, Any]] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    example: Any = None
    # Where a response's ids go next, by status: OpenAPI links (a fuzzer follows them too).
    links: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    # No API key: the route authenticates its caller another way (a provider's signature).
    public: bool = False


DOCUMENTED: dict[Handler, Operation] = {}


def documented(
    op_id: str,
    summary: str,
    *,
    ok: Mapping[int, Reply],
    problems: Mapping[int, str | dict[str, Any]] | None = None,
    params: Sequence[dict[str, Any]] = (),
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    example: Any = None,
    links: Mapping[int, dict[str, Any]] | None = None,
    public: bool = False,
) -> Callable[[H], H]:
    """Mark a handler with what the document says of its route(s)."""
    operation = Operation(
        op_id,
        summary,
        ok,
        problems or {},
        params,
        body,
        body_required,
        example,
        links or {},
        public,
    )

    def mark(handler: H) -> H:
        DOCUMENTED[handler] = operation
        return handler

    return mark


def content(media_type: str, model: str, example: Any = None) -> dict[str, Any]:
    """A media type map naming component `model`, with the seed's `example` if one."""
    media: dict[str, Any] = {"schema": {"$ref": REF.format(model=model)}}
    if example is not None:
        media["examples"] = {"seed": {"value": example}}
    return {media_type: media}


def answer(model: type[BaseModel], media_types: Sequence[str] = (JSON,)) -> dict[str, Any]:
    """The content of a model's answer in each media type: JSON is the model; a page is HTML;
    an event stream is text whose events' data is the model (named in x-event-data)."""
    media: dict[str, Any] = {}
    for media_type in media_types:
        if media_type == JSON:
            media |= content(JSON, model.__name__)
        elif media_type == EVENT_STREAM:
            ref = {"$ref": REF.format(model=model.__name__)}
            media[EVENT_STREAM] = {"schema": {"type": "string"}, "x-event-data": ref}
        else:
            media[media_type] = {"schema": {"type": "string"}}
    return media


def page(description: str) -> dict[str, Any]:
    """An HTML page's answer."""
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def problem(description: str) -> dict[str, Any]:
    """An error answer: application/problem+json."""
    return {"description": description, "content": content(PROBLEM, "Problem")}


RETRY_AFTER = {"required": True, "schema": {"type": "string"}, "description": "Seconds to wait."}
UNAVAILABLE = problem("The database is unreachable.") | {"headers": {"Retry-After": RETRY_AFTER}}
_AUTH_THROTTLE = (
    "too many failed authentications from this address (a valid key is never refused so)"
)


def too_many(why: str | None = None) -> dict[str, Any]:
    """429 with Retry-After: the failed-authentication throttle, and `why` if the route adds one."""
    text = f"{why} Or {_AUTH_THROTTLE}." if why else f"{_AUTH_THROTTLE.capitalize()}."
    return problem(text) | {"headers": {"Retry-After": RETRY_AFTER}}


def path_id(name: str, minimum: int = 1) -> dict[str, Any]:
    """A bigint id in the path."""
    schema = {"type": "integer", "minimum": minimum, "maximum": MAX_BIGINT}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def id_in_path(request: web.Request, not_found: Callable[[str], Exception]) -> int:
    """The `id` of the path (see path_id); `not_found(raw)` is raised unless it is 1-18 digits."""
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise not_found(raw)
    return int(raw)


def id_links(status_ops: Sequence[str], source: str = "$response.body#/id") -> dict[str, Any]:
    """Links from a response's id to the operations that take it as their `id`."""
    return {op: {"operationId": op, "parameters": {"id": source}} for op in status_ops}


TID_PARAM = {
    "name": "tid",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": TID_PATTERN},
}
BAD_JSON = "Not JSON: malformed, not UTF-8, duplicate keys, NaN, too deep."
TOO_LARGE = "The body is larger than the server accepts."
PAGING = [
    {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "Only items with a larger id (the previous page's `next`).",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT, "default": 0},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
    },
]
