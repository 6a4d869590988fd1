"""The OpenAPI 3.1 document, generated from the registered routes and their response models.

Paths and methods are the routes the application actually registered; each route's handler
carries its entry (api/operations.py: summary, answers, problems, parameters), and every body
schema is generated from the pydantic model the handler reads or answers with. GET /openapi.json.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, RootModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api import operations, responses, routes, state
from api.auth import PUBLIC
from api.merchant import payments
from api.operations import JSON, REF, Operation, documented, problem
from api.ops import observability
from api.schemas import checkout
from api.schemas import problem as problem_schema
from config.settings import Settings
from engine import money

# Every /api/ operation needs `Authorization: Bearer <API key>` (api/auth.py).
SECURITY_SCHEME = "apiKey"
_SECURED: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}]
# Why a destination was refused (the tests fuzz with it); defined with the problem body.
EgressReason = problem_schema.EgressReason
# A webhook url as api/merchant/endpoints.check_url takes it: http(s), printable ASCII without
# spaces, no user:password@ before the host, no #fragment. Where the host points is checked apart.
WEBHOOK_URL_PATTERN = (
    r"^https?://[\x21-\x22\x24-\x2e\x30-\x3e\x41-\x7e]+([/?][\x21-\x22\x24-\x7e]*)?$"
)
# Free text (ids, names, reasons): no C0 or C1 control character, no DEL.
NO_CONTROLS = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"

_CHALLENGE = {"required": True, "schema": {"type": "string", "const": 'Bearer realm="api"'}}
_UNAUTHORIZED = problem(
    "No usable API key: missing, malformed, unknown, expired or revoked (`reason` says which)."
) | {"headers": {"WWW-Authenticate": _CHALLENGE}}
# api/body.py: every body read is checked alike.
_BODY_PROBLEMS = {
    "408": problem("The body did not arrive in time."),
    "413": problem(operations.TOO_LARGE),
    "415": problem(
        "Content-Type is not JSON in UTF-8 (`application/json` or `application/*+json`,"
        " no charset or utf-8), or Content-Encoding is not gzip or deflate."
    ),
}
_THROTTLED = operations.too_many()


class OpenApiDocument(RootModel[dict[str, Any]]):
    """This document, as served."""


def _operation(op: Operation, method: str, path: str) -> dict[str, Any]:
    """The OpenAPI operation object of `op` mounted at `path`."""
    answers: dict[str, Any] = {}
    for status, reply in op.ok.items():
        if isinstance(reply, dict):
            answers[str(status)] = reply
            continue
        model, description, *media = reply
        answers[str(status)] = {
            "description": description,
            "content": operations.answer(model, *media),
        } | ({"links": op.links[status]} if status in op.links else {})
    for status, what in op.problems.items():
        answers[str(status)] = problem(what) if isinstance(what, str) else what
    # An entry that serves several routes (the CORS preflight) is named by each route.
    operation: dict[str, Any] = {
        "operationId": op.id or _operation_id(method, path),
        "summary": op.summary,
    }
    if op.params:
        operation["parameters"] = list(op.params)
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": operations.content(JSON, op.body.__name__, op.example),
        }
        for code, answer in _BODY_PROBLEMS.items():
            answers.setdefault(code, answer)
    if op.public:
        operation["security"] = []
    operation["responses"] = answers
    return _secured(path, operation)


def _secured(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """A merchant API operation needs the bearer key: say so, with its 401 and throttle 429."""
    operation = copy.deepcopy(operation)
    if "requestBody" in operation:  # api/body.py: every body read is checked alike
        for code, answer in _BODY_PROBLEMS.items():
            operation["responses"].setdefault(code, answer)
    if "security" not in operation and path.startswith("/api/") and path not in PUBLIC:
        operation["security"] = _SECURED
        operation["responses"]["401"] = _UNAUTHORIZED
        # An operation with a 429 of its own documents the throttle's with it.
        operation["responses"].setdefault("429", _THROTTLED)
    return operation


# The back office's pages and the files browsers load (the SDK, the customer app's scripts,
# styles and manifest): served by the app, not part of the API.
PAGES = ("/backoffice", "/static", "/sdk/", "/app/static/", "/app/manifest.webmanifest")


def _router(settings: Settings) -> web.UrlDispatcher:
    """The routes create_app registers (without starting anything)."""
    app = web.Application()
    app[state.SETTINGS] = settings  # what mounting reads (the checkout streams' limits)
    routes.mount(app)
    add_routes(app)
    return app.router


def _operation_id(method: str, path: str) -> str:
    """An operation id made of the method and the path's words."""
    words = re.findall(r"[a-z0-9]+", path.replace("{", "by ").lower())
    return method + "".join(w.capitalize() for w in words)


def _paths(router: web.UrlDispatcher) -> tuple[dict[str, Any], list[Operation]]:
    seeds = {seed: path for path, seed in payments.SEED_ALIASES.items()}
    paths: dict[str, Any] = {}
    used: list[Operation] = []
    for resource in router.resources():
        path = resource.canonical
        if path.startswith(PAGES):
            continue  # HTML for people and the files it loads, not the API
        for route in resource:
            if route.method == "HEAD":
                continue
            op = operations.DOCUMENTED.get(route.handler)
            method = route.method.lower()
            if op is None:
                raise LookupError(f"{route.method} {path} has no @documented entry")
            used.append(op)
            operation = _operation(op, method, path)
            if path in seeds:
                # The seed's path, the alias of a resource path: the same operation, renamed.
                operation["operationId"] += "SeedPath"
                operation["summary"] += (
                    f" The seed's path: the same as {method.upper()} {seeds[path]}."
                )
            paths.setdefault(path, {})[method] = operation
    return paths, used


@functools.cache
def _model_schemas(
    models: tuple[tuple[type[BaseModel], JsonSchemaMode], ...],
) -> dict[str, Any]:
    _, top = models_json_schema(models, by_alias=True, ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            # A null default on an optional member says nothing a reader or a fuzzer needs.
            if prop.get("default", ...) is None and "anyOf" not in prop:
                del prop["default"]
    return schemas


def _components(used: list[Operation], settings: Settings) -> dict[str, Any]:
    models: dict[type[BaseModel], JsonSchemaMode] = {problem_schema.Problem: "serialization"}
    for op in used:
        if op.body is not None:
            models[op.body] = "validation"
        for reply in op.ok.values():
            if not isinstance(reply, dict):
                models[reply[0]] = "serialization"
    ordered = tuple(sorted(models.items(), key=lambda item: item[0].__name__))
    schemas = copy.deepcopy(_model_schemas(ordered))
    _state_the_validators(schemas, settings)
    return schemas


def _state_the_validators(schemas: dict[str, Any], settings: Settings) -> None:
    """What the request models check in validators (or take from settings), as schema."""
    if "PaymentRequest" in schemas:
        _payment_request(schemas["PaymentRequest"]["properties"], settings)
    if "RefundRequest" in schemas:
        schemas["RefundRequest"]["properties"]["reason"]["anyOf"][0]["pattern"] = NO_CONTROLS
    if "EndpointRequest" in schemas:
        _endpoint_request(schemas["EndpointRequest"]["properties"])
    if "SessionRequest" in schemas:
        _session_request(schemas["SessionRequest"]["properties"], settings)


def _payment_request(body: dict[str, Any], settings: Settings) -> None:
    # The request model checks these in validators; the document states them as schema.
    body["amount"]["maximum"] = settings.max_amount
    body["amount"]["description"] = (
        "Minor units, written as a JSON integer: 10000.0, though JSON Schema counts it an integer,"
        " is refused with 422, like any float."
    )
    # A null mid is taken as no mid (the seed's requests without a merchant).
    mid = {"type": "string", "minLength": 1, "maxLength": 64}
    body["echo"]["properties"] = {"mid": {"anyOf": [mid, {"type": "null"}]}}
    body["echo"]["description"] = (
        "Returned as sent in the 202 and in webhooks. At most 32 levels deep; no NUL characters."
        " echo.mid, if given and not null, must be the API key's merchant (else 403)."
    )
    body["provider"]["description"] = "Who settles it: `card` (the acquirer) or `atom`."
    body["orderName"]["description"] = "The merchant's name for the order (1 to 200 characters)."
    # Accepted only as registered (printable ASCII: endpoint urls are) or as the default.
    body["webhookUrl"]["anyOf"][0].update(format="uri", pattern=WEBHOOK_URL_PATTERN)
    default_url = settings.default_webhook_url
    body["webhookUrl"]["description"] = (
        "Where the payment's webhooks go: the url of one of your webhook endpoints in the key's"
        " mode, exactly as registered with POST /api/webhook-endpoints (any other url is 422),"
        f" or the operator's default receiver {default_url}. Absent: your newest endpoint in"
        " the key's mode, else that default."
    )
    body["currency"]["description"] = (
        f"ISO 4217 code of money in use (engine/money.py); default {settings.default_currency}"
    )
    body["currency"]["anyOf"][0]["enum"] = sorted(money.currencies())
    for text in (body["orderId"], body["userPublicId"], body["orderName"]["anyOf"][0]):
        text["pattern"] = NO_CONTROLS


def _session_request(body: dict[str, Any], settings: Settings) -> None:
    # The intake's maximum (ENGINE_MAX_AMOUNT): a session must be payable.
    body["amount"]["maximum"] = settings.max_amount
    body["currency"]["enum"] = sorted(money.currencies())
    for name in ("orderId", "orderName"):
        body[name]["pattern"] = NO_CONTROLS
    body["customerRef"]["anyOf"][0]["pattern"] = NO_CONTROLS
    for name in ("successUrl", "cancelUrl"):
        body[name]["anyOf"][0]["pattern"] = checkout.URL_PATTERN


def _endpoint_request(endpoint: dict[str, Any]) -> None:
    endpoint["url"].update(format="uri", pattern=WEBHOOK_URL_PATTERN)
    endpoint["url"]["description"] = (
        "Where deliveries go: an absolute http(s) URL in printable ASCII, without spaces, a"
        " user:password@ or a #fragment (else 422 validation-error). Its host must resolve to"
        " public addresses only, unless the operator allows it; https only in production (else"
        " 422 destination-refused, `reason` says why). Payments name it as their webhookUrl"
        " exactly as written here."
    )
    endpoint["description"]["description"] = (
        "Your note on the endpoint (at most 500 characters, no control characters)."
    )
    endpoint["description"]["anyOf"][0]["pattern"] = NO_CONTROLS


def document(settings: Settings, router: web.UrlDispatcher | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `router`'s routes (by default those create_app registers).

    The amount maximum, the default currency and webhook url come from `settings`.
    """
    paths, used = _paths(_router(settings) if router is None else router)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hamster payment gateway engine",
            "version": "0.1.0",
            "description": "Amounts are integers in the currency's minor unit. Every error is "
            "application/problem+json (RFC 9457); 404 and 405 for unknown paths and methods too. "
            "Every /api/ path needs `Authorization: Bearer <API key>`; what it reads and writes "
            "is that key's merchant's alone (anyone else's ids are 404).",
        },
        "paths": paths,
        "components": {
            "schemas": _components(used, settings),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "sk_live_… or sk_test_…",
                    "description": "An API key: sk_live_ or sk_test_ and 43 Base62 characters.",
                }
            },
        },
    }


@documented(
    "openapi",
    "This document.",
    ok={
        200: {
            "description": "The OpenAPI 3.1 document.",
            "content": {JSON: {"schema": {"type": "object"}}},
        }
    },
)
async def serve(request: web.Request) -> web.Response:
    """GET /openapi.json: the document of this application's own routes."""
    doc = document(request.app[state.SETTINGS], request.app.router)
    return responses.send(OpenApiDocument(doc))


def add_routes(app: web.Application) -> None:
    """Mount the operations' routes: this document and /metrics."""
    app.router.add_get("/openapi.json", serve)
    app.router.add_get("/metrics", observability.serve_metrics)
