"""The OpenAPI 3.1 document of the HTTP contract, built from pydantic models; GET /openapi.json."""

from __future__ import annotations

import copy
import functools
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, SkipJsonSchema, models_json_schema

from api import models, problems, state
from api.auth import PUBLIC
from api.merchant import endpoints, history, keys, payments, refunds
from config.settings import Settings
from engine import money
from engine.models import HistoryKind, RefundStatus, Status

REF = "#/components/schemas/{model}"
JSON = "application/json"
# The largest id and `after` cursor: PostgreSQL bigint.
MAX_BIGINT = 2**63 - 1
# The handlers answer 404 without a query for anything else (see payments._TID).
TID_PATTERN = r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$"
MAX_PAGE = 500
# Every /api/ operation needs `Authorization: Bearer <API key>` (api/auth.py).
SECURITY_SCHEME = "apiKey"
_SECURED: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}]
KEY_PATTERN = r"^sk_(live|test)_[0-9A-Za-z]{43}$"
# Why a 401 was answered, in its `reason` member.
AuthFailure = Literal["missing", "malformed", "unknown", "expired", "revoked"]
# Why a webhook destination was refused (engine/webhooks/egress.py), in a destination-refused 422's
# `reason` member.
EgressReason = Literal[
    "invalid_url",
    "scheme",
    "https_required",
    "dns_failed",
    "unspecified",
    "loopback",
    "link_local",
    "multicast",
    "cgnat",
    "reserved",
    "private",
    "unique_local",
]
# A webhook url as api/endpoints.check_url takes it: http(s), printable ASCII without spaces,
# no user:password@ before the host, no #fragment. Where the host points is checked apart.
WEBHOOK_URL_PATTERN = (
    r"^https?://[\x21-\x22\x24-\x2e\x30-\x3e\x41-\x7e]+([/?][\x21-\x22\x24-\x7e]*)?$"
)
# engine/signing.new_secret: "whsec_" and the base64 of 32 random bytes.
SECRET_PATTERN = r"^whsec_[A-Za-z0-9+/]{43}=$"
# The seed's request, as the README shows it.
SEED_EXAMPLE: dict[str, Any] = {
    "userPublicId": "USR_123",
    "orderId": "ORD_456",
    "amount": 10000,
    "echo": {
        "mid": "hamster_dummy_mid_001",
        "orderNumber": "TEST_ORDER",
        "gatewayReferenceId": "CGW_REF_123",
    },
}


class _Response(BaseModel):
    """A response body: exactly these members, so the document notices when a handler drifts."""

    model_config = ConfigDict(extra="forbid")


class PaymentAck(_Response):
    """202 for a new payment (echo exactly as sent), 200 for a replay (its current status)."""

    status: Status
    code: Literal["ACK_OK"]
    transactionId: str
    amount: int = Field(gt=0)
    currency: str
    echo: dict[str, Any]
    message: Literal["Payment request received and processing", "Payment request already received"]


class PaymentLookup(_Response):
    """The seed's lookup body."""

    tid: str
    orderId: str
    amount: int = Field(gt=0)
    currency: str
    status: Status
    approvalNo: str | None
    failReason: str | None
    requestedAt: datetime
    processedAt: datetime | None
    webhookSentAt: datetime | None
    webhookResponseCode: int | None
    # What refunds have returned so far (PARTIALLY_REFUNDED / REFUNDED payments).
    refundedAmount: int = Field(ge=0)


class UnresolvedPayment(PaymentLookup):
    """A payment whose outcome is not known: the lookup body and why."""

    reason: str | None
    outcomeUnknownSince: datetime | None
    attempts: int = Field(ge=0)
    # None while it waits for a person rather than for the next inquiry.
    nextAttemptAt: datetime | None


class UnresolvedPage(_Response):
    """One page of unresolved payments; `next` is the `after` of the next page, if one."""

    payments: list[UnresolvedPayment]
    next: int | None


class WebhookDelivery(_Response):
    """One webhook delivery: where it goes, how far it got."""

    id: int
    eventId: str
    # What webhook_deliveries.event_status may hold (migration 0005 adds the refund events).
    eventStatus: Literal["SUCCESS", "FAILED", "CANCELED", "REFUNDED", "REFUND_FAILED"]
    tid: str | None
    url: str
    status: Literal["PENDING", "SENDING", "DELIVERED", "DEAD"]
    attempts: int = Field(ge=0)
    lastResponseCode: int | None
    lastError: str | None
    createdAt: datetime
    deliveredAt: datetime | None


class PaymentWebhooks(_Response):
    """One page of a payment's deliveries, oldest first; `next` is the `after` of the next page."""

    tid: str
    deliveries: list[WebhookDelivery]
    next: int | None


class DeadLetterPage(_Response):
    """One page of DEAD deliveries; `next` is the `after` of the next page, if one."""

    deliveries: list[WebhookDelivery]
    next: int | None


class TriggerAccepted(_Response):
    """202 of the manual trigger: the payment was settled, or its webhook queued again."""

    tid: str
    status: Literal["SUCCESS", "FAILED"]
    action: Literal["settled", "resent"]
    webhook: Literal["queued"]


class RedeliverAccepted(_Response):
    """202 of a redelivery: the DEAD delivery is PENDING again."""

    id: int
    status: Literal["PENDING"]


class Health(_Response):
    """200 of /health."""

    ok: Literal[True]


class ApiKeyInfo(_Response):
    """An API key as lists show it: its prefix, never the key."""

    id: int = Field(ge=1)
    mode: Literal["live", "test"]
    # Secret (sk_) or publishable (pk_: checkout sessions only).
    kind: Literal["secret", "publishable"]
    prefix: str = Field(pattern=r"^[sp]k_(live|test)_[0-9A-Za-z]{6}$")
    createdAt: datetime
    lastUsedAt: datetime | None
    # Set by a roll's grace period: the key stops working then.
    expiresAt: datetime | None
    revokedAt: datetime | None


class ApiKeyList(_Response):
    """The caller's merchant's keys, newest first."""

    keys: list[ApiKeyInfo]


class IssuedKey(_Response):
    """A key just made. `key` is shown this once; only its hash is kept."""

    id: int = Field(ge=1)
    mode: Literal["live", "test"]
    # Secret (sk_) or publishable (pk_: checkout sessions only).
    kind: Literal["secret", "publishable"]
    prefix: str = Field(pattern=r"^[sp]k_(live|test)_[0-9A-Za-z]{6}$")
    key: str = Field(pattern=r"^[sp]k_(live|test)_[0-9A-Za-z]{43}$")
    createdAt: datetime
    expiresAt: datetime | None


class RolledKey(_Response):
    """201 of a roll: the new key (shown once), and the old one with the end of its grace."""

    new: IssuedKey
    old: ApiKeyInfo


class Endpoint(_Response):
    """A webhook endpoint as the API shows it: never its secrets."""

    # Neither url nor description is bounded here: the operator's CLI (engine/commands/endpoints.py)
    # registers endpoints too, without the API's checks.
    id: int = Field(ge=1)
    url: str
    description: str | None
    # The mode of the key that registered it; only keys of that mode see it.
    mode: Literal["live", "test"]
    createdAt: datetime
    # Secrets that sign its deliveries now: more than 1 while a roll's grace period runs. At
    # least 1 once registered or rolled here; 0 only for an endpoint carried over by migration
    # 0010 whose secrets had all expired.
    activeSecrets: int = Field(ge=0)


class EndpointCreated(Endpoint):
    """201 of a registration or a roll: the endpoint and its new secret, shown this once."""

    secret: str = Field(pattern=SECRET_PATTERN)


class EndpointDeleted(Endpoint):
    """200 of a delete: the endpoint as it was; it receives nothing more, its secrets stopped."""

    activeSecrets: Literal[0]
    deleted: Literal[True]


class EndpointList(_Response):
    """The merchant's active endpoints of the key's mode, oldest first."""

    endpoints: list[Endpoint]


class EndpointTestResult(_Response):
    """200 of a test event: what the endpoint answered (nothing is stored or retried)."""

    endpointId: int = Field(ge=1)
    eventId: str = Field(pattern=r"^evt_test_[0-9a-f]{20}$")
    # True when the endpoint answered 2xx.
    delivered: bool
    # Why not: `refused:<reason>` (the destination is refused now), `timeout`, `redirect`,
    # `http_<status>`, `connect_failed` ...; null when delivered.
    error: str | None
    # The endpoint's HTTP status, when it answered one: any three digits it sent.
    responseCode: int | None = Field(ge=0, le=999)


class Refund(_Response):
    """A refund as the API shows it."""

    refundId: str = Field(pattern=r"^RF[0-9A-Za-z]{11}$")
    transactionId: str
    amount: int = Field(gt=0)
    currency: str
    reason: str | None
    status: RefundStatus
    refundNo: str | None
    failReason: str | None
    requestedAt: datetime
    processedAt: datetime | None


class PaymentRefunds(_Response):
    """A payment's refunds, oldest first."""

    transactionId: str
    refunds: list[Refund]


class HistoryItem(_Response):
    """One line of the history: a payment, a cancel or a refund."""

    kind: HistoryKind
    tid: str
    refundId: str | None
    orderId: str
    orderName: str | None
    customerId: str
    # The refund's amount, for a refund.
    amount: int = Field(gt=0)
    currency: str
    status: Status | RefundStatus
    createdAt: datetime


class HistoryPage(_Response):
    """One page of the history, newest first; `next` is the `cursor` of the next page, if one."""

    items: list[HistoryItem]
    next: str | None


class PaymentEvent(_Response):
    """One state change of a payment or of one of its refunds."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    from_: str | None = Field(alias="from")
    to: str
    # "engine:<worker>", "merchant:<key prefix>", ...
    actor: str
    at: datetime
    refundId: str | None


class PaymentEvents(_Response):
    """Every state change of one payment, oldest first."""

    tid: str
    events: list[PaymentEvent]


class FieldError(_Response):
    """One failing input of a 422."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem; members other than these are extensions."""

    # RFC 9457 lets a problem type add members; ours are listed, others are not refused.
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    # Absent, never null, when they do not apply: SkipJsonSchema keeps null out of the schema.
    instance: str | SkipJsonSchema[None] = None
    field: str | SkipJsonSchema[None] = Field(default=None, description="The offending input.")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="422: every failing input."
    )
    transactionId: str | SkipJsonSchema[None] = Field(
        default=None, description="409 idempotency-conflict: the payment already made."
    )
    currentStatus: str | SkipJsonSchema[None] = Field(
        default=None, description="409 state-conflict: the payment's status now."
    )
    refundable: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None, description="409 refund-exceeds-captured: what is left to refund."
    )
    limit: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        default=None, description="409 limit-reached: how many active ones there may be."
    )
    reason: Literal[AuthFailure, EgressReason] | SkipJsonSchema[None] = Field(
        default=None,
        description="401: why the API key was not accepted. 422 destination-refused: why the"
        " url's destination is refused.",
    )


@functools.cache
def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the document names; made on first use, not at import."""

    # Its own name: keys.RollRequest is "RollRequest" already.
    class EndpointRollRequest(endpoints.RollRequest):
        """POST /api/webhook-endpoints/{id}/roll: the old secrets sign `graceSeconds` more."""

    return [
        (models.PaymentRequest, "validation"),
        (keys.IssueRequest, "validation"),
        (keys.RollRequest, "validation"),
        (refunds.RefundRequest, "validation"),
        (endpoints.EndpointRequest, "validation"),
        (EndpointRollRequest, "validation"),
        *(
            (m, "serialization")
            for m in (
                PaymentAck,
                PaymentLookup,
                UnresolvedPage,
                PaymentWebhooks,
                DeadLetterPage,
                TriggerAccepted,
                RedeliverAccepted,
                Health,
                ApiKeyInfo,
                ApiKeyList,
                IssuedKey,
                RolledKey,
                Refund,
                PaymentRefunds,
                HistoryPage,
                PaymentEvents,
                Endpoint,
                EndpointCreated,
                EndpointDeleted,
                EndpointList,
                EndpointTestResult,
                Problem,
            )
        ),
    ]


def _schemas(settings: Settings) -> dict[str, Any]:
    _, top = models_json_schema(_models(), by_alias=True, ref_template=REF)
    schemas: dict[str, Any] = copy.deepcopy(top["$defs"])
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            # A null default on an optional member says nothing a reader or a fuzzer needs.
            if prop.get("default", ...) is None and "anyOf" not in prop:
                del prop["default"]
    body = schemas["PaymentRequest"]["properties"]
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
    for text in (
        body["orderId"],
        body["userPublicId"],
        body["orderName"]["anyOf"][0],
        schemas["RefundRequest"]["properties"]["reason"]["anyOf"][0],
    ):
        text["pattern"] = NO_CONTROLS
    endpoint = schemas["EndpointRequest"]["properties"]
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
    return schemas


def _content(media_type: str, model: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": REF.format(model=model)}}
    if example is not None:
        media["examples"] = {"seed": {"value": example}}
    return {media_type: media}


def _json(model: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(JSON, model)}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(problems.CONTENT_TYPE, "Problem")}


_RETRY_AFTER = {"required": True, "schema": {"type": "string"}, "description": "Seconds to wait."}
_UNAVAILABLE = _problem("The database is unreachable.") | {"headers": {"Retry-After": _RETRY_AFTER}}
_CHALLENGE = {"required": True, "schema": {"type": "string", "const": 'Bearer realm="api"'}}
_UNAUTHORIZED = _problem(
    "No usable API key: missing, malformed, unknown, expired or revoked (`reason` says which)."
) | {"headers": {"WWW-Authenticate": _CHALLENGE}}
_KEY_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT},
}


_AUTH_THROTTLE = (
    "too many failed authentications from this address (a valid key is never refused so)"
)


def _too_many(why: str | None = None) -> dict[str, Any]:
    """429 with Retry-After: the failed-authentication throttle, and `why` if the route adds one."""
    text = f"{why} Or {_AUTH_THROTTLE}." if why else f"{_AUTH_THROTTLE.capitalize()}."
    return _problem(text) | {"headers": {"Retry-After": _RETRY_AFTER}}


_THROTTLED = _too_many()
_SLOW_BODY = _problem("The body did not arrive in time.")
_TOO_LARGE = _problem("The body is larger than the server accepts.")
_MEDIA = _problem(
    "Content-Type is not JSON in UTF-8 (`application/json` or `application/*+json`,"
    " no charset or utf-8), or Content-Encoding is not gzip or deflate."
)
# Free text (ids, names, reasons): no C0 or C1 control character, no DEL.
NO_CONTROLS = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"


def _secured(operations: dict[str, Any]) -> dict[str, Any]:
    """Every /api/ operation: the bearer key required, and its 401 documented."""
    for path, item in operations.items():
        for operation in item.values():
            if "requestBody" in operation:  # api/body.py: every body read is checked alike
                operation["responses"].setdefault("408", _SLOW_BODY)
                operation["responses"].setdefault("413", _TOO_LARGE)
                operation["responses"].setdefault("415", _MEDIA)
        # A provider's callback is authenticated by the provider's signature, not a key.
        if path.startswith("/api/") and path not in PUBLIC:
            for operation in item.values():
                operation["security"] = _SECURED
                operation["responses"]["401"] = _UNAUTHORIZED
                # An operation with a 429 of its own documents the throttle's with it.
                operation["responses"].setdefault("429", _THROTTLED)
    return operations


def _key_paths() -> dict[str, Any]:
    key_not_found = _problem("This merchant has no such (active) API key.")
    bad_json = _problem("The body is not JSON: malformed, not UTF-8, duplicate keys.")
    bad_body = _problem("A member is unknown or invalid; `field` names it.")
    at_limit = _problem(
        "The merchant has as many active keys of this mode as it may have"
        " (/problems/limit-reached, `limit` says how many)."
    )
    # A fuzzer may roll or revoke only keys it made itself, never the one it calls with.
    made = {
        op: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
        for op in ("rollKey", "revokeKey")
    }
    return {
        "/api/keys": {
            "get": {
                "operationId": "listKeys",
                "summary": "The merchant's API keys (prefixes only), newest first.",
                "responses": {"200": _json("ApiKeyList", "The keys."), "503": _UNAVAILABLE},
            },
            "post": {
                "operationId": "issueKey",
                "summary": "A new API key, shown once; of the caller's mode unless `mode` says.",
                "requestBody": {"required": False, "content": _content(JSON, "IssueRequest")},
                "responses": {
                    "201": _json("IssuedKey", "The new key.") | {"links": made},
                    "400": bad_json,
                    "403": _problem(
                        "`mode` names the other mode: a key issues keys of its own"
                        " mode only (/problems/mode-mismatch, `field` mode)."
                    ),
                    "409": at_limit,
                    "422": bad_body,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/keys/{id}/roll": {
            "post": {
                "operationId": "rollKey",
                "summary": "A new key now; the old one works `graceSeconds` more, then stops.",
                "parameters": [_KEY_ID],
                "requestBody": {"required": False, "content": _content(JSON, "RollRequest")},
                "responses": {
                    "201": _json("RolledKey", "The new key and the old one's end."),
                    "400": bad_json,
                    "404": key_not_found,
                    "409": at_limit,
                    "422": bad_body,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/keys/{id}": {
            "delete": {
                "operationId": "revokeKey",
                "summary": "The key stops working now.",
                "parameters": [_KEY_ID],
                "responses": {
                    "200": _json("ApiKeyInfo", "The revoked key."),
                    "404": key_not_found,
                    "503": _UNAVAILABLE,
                },
            }
        },
    }


_ENDPOINT_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT},
}


def _endpoint_paths() -> dict[str, Any]:
    # Another merchant's endpoint, or the other mode's, is not found either.
    not_found = _problem(
        "This merchant has no active webhook endpoint with this id in the key's mode."
    )
    bad_json = _problem(
        "The body is not JSON: malformed, not UTF-8, duplicate keys, too deep;"
        " or it could not be read as its headers describe it."
    )
    # The stateful links stop short of the test event: it calls the registered url.
    made = {
        op: {"operationId": op, "parameters": {"id": "$response.body#/id"}}
        for op in ("getEndpoint", "rollEndpointSecret", "deleteEndpoint")
    }
    return {
        "/api/webhook-endpoints": {
            "post": {
                "operationId": "createEndpoint",
                "summary": "Register a webhook endpoint of the key's mode; its signing secret"
                " is shown this once.",
                "requestBody": {"required": True, "content": _content(JSON, "EndpointRequest")},
                "responses": {
                    "201": _json("EndpointCreated", "Registered, with its secret.")
                    | {"links": made},
                    "400": bad_json,
                    "409": _problem(
                        "The url is registered already in this mode (/problems/endpoint-exists,"
                        " `field` url: roll its secret instead), or the merchant has as many"
                        " endpoints in this mode as it may have (/problems/limit-reached,"
                        " `limit` says how many)."
                    ),
                    "422": _problem(
                        "A member is missing, unknown or invalid (/problems/validation-error,"
                        " `field` names it), or the url's destination is refused"
                        " (/problems/destination-refused, `field` url, `reason` says why)."
                    ),
                    "503": _UNAVAILABLE,
                },
            },
            "get": {
                "operationId": "listEndpoints",
                "summary": "The merchant's active endpoints of the key's mode, oldest first.",
                "responses": {
                    "200": _json("EndpointList", "The endpoints (no secrets)."),
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/webhook-endpoints/{id}": {
            "get": {
                "operationId": "getEndpoint",
                "summary": "One endpoint (never its secrets).",
                "parameters": [_ENDPOINT_ID],
                "responses": {
                    "200": _json("Endpoint", "The endpoint."),
                    "404": not_found,
                    "503": _UNAVAILABLE,
                },
            },
            "delete": {
                "operationId": "deleteEndpoint",
                "summary": "The endpoint receives nothing more, at once; its secrets stop.",
                "parameters": [_ENDPOINT_ID],
                "responses": {
                    "200": _json("EndpointDeleted", "Deleted."),
                    "404": not_found,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/webhook-endpoints/{id}/roll": {
            "post": {
                "operationId": "rollEndpointSecret",
                "summary": "A new secret now; the old ones sign `graceSeconds` more, then stop.",
                "parameters": [_ENDPOINT_ID],
                "requestBody": {
                    "required": False,
                    "content": _content(JSON, "EndpointRollRequest"),
                },
                "responses": {
                    "201": _json(
                        "EndpointCreated", "The endpoint with its new secret, shown once."
                    ),
                    "400": bad_json,
                    "404": not_found,
                    "422": _problem("A member is unknown or invalid; `field` names it."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/webhook-endpoints/{id}/test": {
            "post": {
                "operationId": "testEndpoint",
                "summary": "Send the endpoint a signed TEST event now, as a delivery would go, and"
                " say what it answered.",
                "parameters": [_ENDPOINT_ID],
                "responses": {
                    "200": _json("EndpointTestResult", "Sent, or refused: `delivered` says which."),
                    "404": not_found,
                    "429": _too_many(
                        "One test event per endpoint every few seconds (/problems/test-limited)."
                    ),
                    "503": _UNAVAILABLE,
                },
            }
        },
    }


_TID = {
    "name": "tid",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": TID_PATTERN},
}


def _one_or_more(values: list[str]) -> str:
    """A pattern for a comma-separated list of `values`."""
    one = "|".join(values)
    return f"^({one})(,({one}))*$"


_HISTORY_PARAMS = [
    {
        "name": "kind",
        "in": "query",
        "required": False,
        "description": "Only these kinds, comma-separated.",
        "schema": {"type": "string", "pattern": _one_or_more([k.value for k in HistoryKind])},
    },
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "Only these statuses (of payments or refunds), comma-separated.",
        "schema": {
            "type": "string",
            "pattern": _one_or_more(
                sorted({s.value for s in Status} | {s.value for s in RefundStatus})
            ),
        },
    },
    {
        "name": "from",
        "in": "query",
        "required": False,
        "description": "createdAt at or after this instant (with a UTC offset).",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "to",
        "in": "query",
        "required": False,
        "description": "createdAt before this instant; later than `from`, else 422.",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "minAmount",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT},
    },
    {
        "name": "maxAmount",
        "in": "query",
        "required": False,
        "description": "Not less than `minAmount`, else 422.",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT},
    },
    {
        "name": "q",
        "in": "query",
        "required": False,
        "description": "A prefix of the order id or customer id, or of the order name (any case).",
        "schema": {"type": "string", "minLength": 1, "maxLength": history.MAX_Q},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": history.MAX_LIMIT,
            "default": history.DEFAULT_LIMIT,
        },
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "The previous page's `next`, unchanged (anything else is 422).",
        "schema": {"type": "string"},
    },
]


def _refund_and_history_paths(not_found: dict[str, Any]) -> dict[str, Any]:
    bad_json = _problem("Not JSON: malformed, not UTF-8, duplicate keys, NaN, too deep.")
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": "The same key again answers with the same refund (200).",
        "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
    }
    return {
        "/api/payments": {
            "get": {
                "operationId": "listHistory",
                "summary": "The merchant's payments, cancels and refunds, newest first.",
                "parameters": _HISTORY_PARAMS,
                "responses": {
                    "200": _json("HistoryPage", "One page."),
                    "422": _problem("A filter, `limit` or `cursor` is not valid."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/{tid}/events": {
            "get": {
                "operationId": "getPaymentEvents",
                "summary": "Every state change of a payment and its refunds, oldest first.",
                "parameters": [_TID],
                "responses": {
                    "200": _json("PaymentEvents", "The events."),
                    "404": not_found,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/{tid}/cancel": {
            "post": {
                "operationId": "cancelPayment",
                "summary": "A PENDING payment becomes CANCELED.",
                "parameters": [_TID],
                "responses": {
                    "200": _json("PaymentLookup", "Canceled."),
                    "404": not_found,
                    "409": _problem("The payment is past PENDING (or may have been charged)."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/{tid}/refunds": {
            "post": {
                "operationId": "createRefund",
                "summary": "Give back (part of) a captured payment: 202 once accepted.",
                "parameters": [_TID, idempotency_key],
                "requestBody": {"required": True, "content": _content(JSON, "RefundRequest")},
                "responses": {
                    "202": _json("Refund", "Accepted: REFUND_PENDING."),
                    "200": _json("Refund", "A replay: the refund of this Idempotency-Key."),
                    "400": bad_json,
                    "404": not_found,
                    "409": _problem(
                        "Not refundable: not captured, more than is left, or the "
                        "Idempotency-Key was used for another request."
                    ),
                    "413": _problem("The body is larger than the server accepts."),
                    "422": _problem("The Idempotency-Key or a field is missing or invalid."),
                    "503": _UNAVAILABLE,
                },
            },
            "get": {
                "operationId": "listRefunds",
                "summary": "A payment's refunds, oldest first.",
                "parameters": [_TID],
                "responses": {
                    "200": _json("PaymentRefunds", "The refunds."),
                    "404": not_found,
                    "503": _UNAVAILABLE,
                },
            },
        },
        "/api/refunds/{refund_id}": {
            "get": {
                "operationId": "getRefund",
                "summary": "One refund.",
                "parameters": [
                    {
                        "name": "refund_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("Refund", "The refund."),
                    "404": _problem("This merchant has no refund with this id."),
                    "503": _UNAVAILABLE,
                },
            }
        },
    }


_PAGING = [
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


def _paths() -> dict[str, Any]:
    # Another merchant's payment is not found either: whether it exists does not leak.
    not_found = _problem("This merchant has no payment with this transaction id.")
    bad_paging = _problem("`after` or `limit` is not an integer in range.")
    pay_body = _content(JSON, "PaymentRequest", SEED_EXAMPLE)
    # Links say where a response's ids go next (and let a fuzzer reach real payments).
    by_tid = {
        op: {"operationId": op, "parameters": {"tid": "$response.body#/transactionId"}}
        for op in ("getTransaction", "getTransactionWebhooks", "triggerWebhook")
    }
    paths: dict[str, Any] = {
        "/api/payments": {
            "post": {
                "operationId": "createPayment",
                "summary": "Accept a payment: 202 once its PENDING row is committed.",
                "requestBody": {"required": True, "content": pay_body},
                "responses": {
                    "202": _json("PaymentAck", "Accepted: a new payment, PENDING.")
                    | {"links": by_tid},
                    "200": _json("PaymentAck", "A replay: the same request for the same order."),
                    "400": _problem(
                        "Not JSON: malformed, not UTF-8, duplicate keys, NaN, too deep."
                    ),
                    "408": _problem("The body did not arrive in time."),
                    "403": _problem("echo.mid names another merchant than the API key's."),
                    "409": _problem("The order was already paid for with another request."),
                    "413": _problem("The body is larger than the server accepts."),
                    "422": _problem(
                        "A field is missing or invalid (`field` names it), or `webhookUrl`"
                        " is not one of the merchant's endpoints in the key's mode."
                    ),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/{tid}": {
            "get": {
                "operationId": "getTransaction",
                "summary": "The seed's lookup body.",
                "parameters": [_TID],
                "responses": {
                    "200": _json("PaymentLookup", "The payment."),
                    "404": not_found,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/{tid}/webhooks": {
            "get": {
                "operationId": "getTransactionWebhooks",
                "summary": "A payment's webhook deliveries, by id.",
                "parameters": [_TID, *_PAGING],
                "responses": {
                    "200": _json("PaymentWebhooks", "One page, oldest first."),
                    "404": not_found,
                    "422": bad_paging,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/{tid}/webhook-trigger": {
            "post": {
                "operationId": "triggerWebhook",
                "summary": "Settle a payment by hand, or send its final webhook again.",
                "parameters": [
                    _TID,
                    {
                        "name": "status",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "enum": ["SUCCESS", "FAILED"]},
                    },
                ],
                "responses": {
                    "202": _json("TriggerAccepted", "Settled, or the webhook queued again."),
                    "403": _problem("Settling a payment by hand needs a test key (sk_test_)."),
                    "404": not_found,
                    "409": _problem(
                        "The payment is final with the other status, or a worker has"
                        " it (PROCESSING) or lost track of it (UNRESOLVED): the provider"
                        " may have moved money, so only a PENDING payment is settled by"
                        " hand; or it kept changing. `currentStatus` says which."
                    ),
                    "422": _problem("`status` is missing or not SUCCESS/FAILED."),
                    "429": _too_many(
                        "Its webhook was queued too often in the resend window"
                        " (/problems/resend-limited)."
                    ),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/payments/unresolved": {
            "get": {
                "operationId": "listUnresolvedPayments",
                "summary": "Payments whose outcome is not known, by id.",
                "parameters": _PAGING,
                "responses": {
                    "200": _json("UnresolvedPage", "One page."),
                    "422": bad_paging,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/webhooks/dead": {
            "get": {
                "operationId": "listDeadWebhooks",
                "summary": "Deliveries that used up their attempts, by id.",
                "parameters": _PAGING,
                "responses": {
                    "200": _json("DeadLetterPage", "One page.")
                    | {
                        "links": {
                            "redeliverWebhook": {
                                "operationId": "redeliverWebhook",
                                "parameters": {"id": "$response.body#/deliveries/0/id"},
                            },
                        }
                    },
                    "422": bad_paging,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/webhooks/{id}/redeliver": {
            "post": {
                "operationId": "redeliverWebhook",
                "summary": "Send a DEAD delivery again, with a fresh attempt budget.",
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT},
                    }
                ],
                "responses": {
                    "202": _json("RedeliverAccepted", "PENDING again."),
                    "404": _problem("This merchant has no DEAD delivery with this id."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "200 when the database answers.",
                "responses": {"200": _json("Health", "Healthy."), "503": _UNAVAILABLE},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/api/providers/atom/callback": {
            "post": {
                "operationId": "atomCallback",
                "summary": "Atom's signed callback with a payment's outcome (no API key: the"
                " signature authenticates it; a bad one is refused and counted).",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["encData"],
                                "properties": {"encData": {"type": "string", "minLength": 1}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Verified; the payment is (now) in the state it names.",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["tid", "status", "settled"],
                                    "properties": {
                                        "tid": {"type": "string"},
                                        "status": {"type": "string"},
                                        "settled": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    "400": _problem("The body is not JSON."),
                    "401": _problem("encData cannot be verified (one answer for every reason)."),
                    "404": _problem("No Atom payment with that tid, amount and currency."),
                    "409": _problem("The payment is final with the other outcome."),
                    "422": _problem("encData is missing or not a string."),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of every process.",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _problem("ENGINE_METRICS_TOKEN is set: send it as a bearer."),
                    "404": _problem("Served on ENGINE_METRICS_PORT only."),
                },
            }
        },
        **_key_paths(),
        **_endpoint_paths(),
    }
    paths = _with_seed_aliases(paths)
    for path, item in _refund_and_history_paths(not_found).items():
        paths.setdefault(path, {}).update(item)  # /api/payments: POST pays, GET lists
    return _secured(paths)


def _with_seed_aliases(paths: dict[str, Any]) -> dict[str, Any]:
    """The seed's paths, each the alias of a resource path: the same operations, renamed."""
    for path, seed in payments.SEED_ALIASES.items():
        alias = copy.deepcopy(paths[path])
        for method, operation in alias.items():
            operation["operationId"] += "SeedPath"
            operation["summary"] += f" The seed's path: the same as {method.upper()} {path}."
        paths[seed] = alias
    return paths


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these settings (the amount maximum comes from them)."""
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
        "paths": _paths(),
        "components": {
            "schemas": _schemas(settings),
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


async def serve(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return web.json_response(document(request.app[state.SETTINGS]))
