"""The OpenAPI description of checkout's routes (sessions, the SDK's view, stream and QR) and
of the customer app's, merged into the document by api/ops/openapi.py."""

from __future__ import annotations

from typing import Any

from api import problems
from engine import money

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECRET = {"name": "clientSecret", "in": "query", "required": True, "schema": {"type": "string"}}
_KEY = {
    "name": "key",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "The publishable key, where no header can be sent (EventSource, images).",
}
_OBJECT = {"type": "object"}


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {problems.CONTENT_TYPE: {"schema": schema}}}


def _ok(description: str, media: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = _OBJECT if media == "application/json" else {"type": "string"}
    return {"description": description, "content": {media: {"schema": schema}}}


_ACT = ("401", "403", "404", "409")
_NOT_FOUND = _problem("No such session for this key (`code` not_found).")
_BROWSER_ERRORS = {
    "403": _problem("A secret key was sent (`code` secret_key_in_browser)."),
    "404": _NOT_FOUND,
}
_PREFLIGHT = {
    "summary": "CORS preflight.",
    "parameters": [_ID],
    "responses": {"204": {"description": "Allowed."}},
}
_QR_PREFLIGHT = _PREFLIGHT | {
    "responses": {"204": {"description": "Allowed."}, "404": _problem("Not a QR image kind.")},
    "parameters": [
        _ID,
        {"name": "kind", "in": "path", "required": True, "schema": {"enum": ["svg", "png"]}},
    ],
}


def _done(description: str) -> dict[str, Any]:
    """An action's answer: JSON when asked for (Accept), else the page it leads to."""
    answer = _ok(description)
    answer["content"]["text/html"] = {"schema": {"type": "string"}}
    return answer


def _app(summary: str, ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    texts = {
        "401": "Not signed in (`code` signed_out).",
        "403": "Missing or wrong CSRF token (`code` csrf).",
        "404": "No such session.",
        "409": "The session had moved on: `reason` says why.",
        "429": "Too many failed sign-ins from this address.",
    }
    responses = {"200": ok} | {e: _problem(texts[e]) for e in errors}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if "404" in errors:  # the routes with a session's id in the path
        operation["parameters"] = [_ID]
    return operation


# Free text (ids, names): no C0 or C1 control character, no DEL.
_TEXT = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"


def _session_request(max_amount: int) -> dict[str, Any]:
    """What SessionRequest (api/checkout/sessions.py) accepts, its validators included."""

    def text(most: int) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": most, "pattern": _TEXT}

    url = {"type": "string", "maxLength": 2048, "pattern": "^https?://[^\\s\\x00-\\x1f]+$"}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["amount", "currency", "orderId", "orderName"],
        "properties": {
            # The intake's maximum (ENGINE_MAX_AMOUNT): a session must be payable.
            "amount": {"type": "integer", "minimum": 1, "maximum": max_amount},
            "currency": {"type": "string", "enum": sorted(money.currencies())},
            "orderId": text(64),
            "orderName": text(200),
            "customerRef": text(64),
            "successUrl": url,
            "cancelUrl": url,
            "expiresInSeconds": {"type": "integer", "minimum": 30, "maximum": 3600},
        },
    }


def paths(max_amount: int) -> dict[str, Any]:
    """Checkout's and the app's paths."""
    public = "/api/public/checkout/sessions/{id}"
    html = _ok("The page.", "text/html")
    return {
        "/api/checkout/sessions": {
            "post": {
                "operationId": "createCheckoutSession",
                "summary": "An open checkout session (Idempotency-Key honoured).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _session_request(max_amount)}},
                },
                "responses": {
                    "200": _ok("A replay: the session this key or order made."),
                    "201": _ok("The new session, with its clientSecret."),
                    "400": _problem("Malformed JSON."),
                    "403": _problem("A publishable key (`code` publishable_key_not_allowed)."),
                    "409": _problem("The order or key was used with another request."),
                    "422": _problem("A field is invalid (`field` names it)."),
                },
            }
        },
        "/api/checkout/sessions/{id}": {
            "get": {
                "operationId": "getCheckoutSession",
                "summary": "The session now, with its payment's tid.",
                "parameters": [_ID],
                "responses": {"200": _ok("The session."), "404": _NOT_FOUND},
            }
        },
        public: {
            "get": {
                "operationId": "viewCheckoutSession",
                "summary": "The SDK's view of a session (publishable key).",
                "parameters": [_ID, _SECRET, _KEY],
                "responses": {"200": _ok("The session's public view.")} | _BROWSER_ERRORS,
            },
            "options": _PREFLIGHT,
        },
        public + "/events": {
            "get": {
                "operationId": "checkoutSessionEvents",
                "summary": "Server-Sent Events: `changed`, the version as id; closes when final.",
                "parameters": [_ID, _SECRET, _KEY],
                "responses": {
                    "200": _ok("The event stream.", "text/event-stream"),
                    "204": {"description": "Final already, and Last-Event-ID says it was seen."},
                    "429": _problem("Too many streams for this session or address."),
                }
                | _BROWSER_ERRORS,
            },
            "options": _PREFLIGHT,
        },
        public + "/pay": {
            "post": {
                "operationId": "payCheckoutSessionHosted",
                "summary": "Pay the session at a provider's own page (Atom): the view's `action`"
                " then names the page to send the customer to.",
                "parameters": [_ID, _SECRET, _KEY],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["method"],
                                "properties": {"method": {"enum": ["atom"]}},
                            }
                        }
                    },
                },
                "responses": {
                    "202": _ok("The session's public view; its payment is PENDING."),
                    "400": _problem("Malformed JSON."),
                    "409": _problem("The session is not open any more (`code` says why)."),
                    "422": _problem("`method` is not one we know."),
                }
                | _BROWSER_ERRORS,
            },
            "options": _PREFLIGHT,
        },
        public + "/qr.{kind}": {
            "get": {
                "operationId": "checkoutSessionQr",
                "summary": "The app's link for this session as a QR code (svg or png).",
                "parameters": [
                    _ID,
                    _SECRET,
                    _KEY,
                    {
                        "name": "kind",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["svg", "png"]},
                    },
                ],
                "responses": {"200": _ok("The image.", "image/svg+xml")} | _BROWSER_ERRORS,
            },
            "options": _QR_PREFLIGHT,
        },
        "/app/": {"get": _app("The QR payment menu, or the login form.", html)},
        "/app/login": {"post": _app("Sign in (form), then 303 to `next`.", html, "403", "429")},
        "/app/logout": {"post": _app("Sign out (form, csrf), then 303.", html, "403")},
        "/app/pay/{id}": {
            "get": _app("The payment page (marks the session scanned).", html, "404")
        },
        "/app/pay/{id}/confirm": {
            "post": _app(
                "Pay with the customer's card, once.", _done("Done."), "401", "403", "404", "409"
            )
        },
        "/app/pay/{id}/cancel": {"post": _app("Cancel the purchase.", _done("Done."), *_ACT)},
        "/app/history": {"get": _app("The usage history page.", html)},
        "/app/api/pay/{id}": {
            "get": _app("The payment page's data.", _ok("The data."), "401", "404")
        },
        "/app/api/history": {"get": _app("The usage history.", _ok("The items."), "401")},
        "/app/return/{mode}/{tid}": {
            "get": {
                "summary": "The completion page a provider's hosted page sends the customer"
                " back to (its URL carries a MAC, `sig`; anything else is 404).",
                "parameters": [
                    {
                        "name": "mode",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["test", "live"]},
                    },
                    {"name": "tid", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {"200": html, "404": _problem("No such payment (`field` tid).")},
            }
        },
    }
