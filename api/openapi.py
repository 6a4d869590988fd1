"""The OpenAPI 3.1 document of the HTTP contract, built from pydantic models; GET /openapi.json."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, SkipJsonSchema, models_json_schema

from api import app as app_module
from api import models, problems
from config.settings import Settings
from engine.models import Status

REF = "#/components/schemas/{model}"
JSON = "application/json"
# The largest id and `after` cursor: PostgreSQL bigint.
MAX_BIGINT = 2**63 - 1
# The handlers answer 404 without a query for anything else (see payments._TID).
TID_PATTERN = r"^[A-Z0-9]{1,16}_[0-9]{8}_[0-9]{8}$"
MAX_PAGE = 500
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
    eventStatus: Literal["SUCCESS", "FAILED"]
    tid: str | None
    url: str
    status: Literal["PENDING", "SENDING", "DELIVERED", "DEAD"]
    attempts: int = Field(ge=0)
    lastResponseCode: int | None
    lastError: str | None
    createdAt: datetime
    deliveredAt: datetime | None


class PaymentWebhooks(_Response):
    """Every delivery of one payment."""

    tid: str
    deliveries: list[WebhookDelivery]


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
        default=None, description="409 state-conflict: the payment's final status."
    )


_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (models.PaymentRequest, "validation"),
    *((m, "serialization") for m in (PaymentAck, PaymentLookup, UnresolvedPage, PaymentWebhooks,
                                      DeadLetterPage, TriggerAccepted, RedeliverAccepted, Health,
                                      Problem)),
]  # fmt: skip


def _schemas(settings: Settings) -> dict[str, Any]:
    _, top = models_json_schema(_MODELS, by_alias=True, ref_template=REF)
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
    )
    url = body["webhookUrl"]["anyOf"][0]
    # "iri": the server takes international host names too (sent on as punycode).
    url.update(format="iri", pattern="^https?://")
    default_url = settings.default_webhook_url
    body["webhookUrl"]["description"] = f"Absolute http(s) URL; default {default_url}"
    body["currency"]["description"] = f"ISO 4217 code; default {settings.default_currency}"
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

_TID = {"name": "tid", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": TID_PATTERN}}  # fmt: skip
_PAGING = [
    {"name": "after", "in": "query", "required": False,
     "description": "Only items with a larger id (the previous page's `next`).",
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT, "default": 0}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100}},
]  # fmt: skip


def _paths() -> dict[str, Any]:
    not_found = _problem("No payment has this transaction id.")
    bad_paging = _problem("`after` or `limit` is not an integer in range.")
    pay_body = _content(JSON, "PaymentRequest", SEED_EXAMPLE)
    # Links say where a response's ids go next (and let a fuzzer reach real payments).
    by_tid = {
        op: {"operationId": op, "parameters": {"tid": "$response.body#/transactionId"}}
        for op in ("getTransaction", "getTransactionWebhooks", "triggerWebhook")
    }
    return {
        "/api/payment": {"post": {
            "operationId": "createPayment",
            "summary": "Accept a payment: 202 once its PENDING row is committed.",
            "requestBody": {"required": True, "content": pay_body},
            "responses": {
                "202": _json("PaymentAck", "Accepted: a new payment, PENDING.") | {"links": by_tid},
                "200": _json("PaymentAck", "A replay: the same request for the same order."),
                "400": _problem("Not JSON: malformed, not UTF-8, duplicate keys, NaN, too deep."),
                "408": _problem("The body did not arrive in time."),
                "409": _problem("The order was already paid for with another request."),
                "413": _problem("The body is larger than the server accepts."),
                "422": _problem("A field is missing or invalid; `field` names it."),
                "503": _UNAVAILABLE,
            },
        }},
        "/api/payment/transaction/{tid}": {"get": {
            "operationId": "getTransaction",
            "summary": "The seed's lookup body.",
            "parameters": [_TID],
            "responses": {"200": _json("PaymentLookup", "The payment."), "404": not_found,
                          "503": _UNAVAILABLE},
        }},
        "/api/payment/transaction/{tid}/webhooks": {"get": {
            "operationId": "getTransactionWebhooks",
            "summary": "Every webhook delivery of a payment.",
            "parameters": [_TID],
            "responses": {"200": _json("PaymentWebhooks", "The deliveries, oldest first."),
                          "404": not_found, "503": _UNAVAILABLE},
        }},
        "/api/payment/webhook/trigger/{tid}": {"post": {
            "operationId": "triggerWebhook",
            "summary": "Settle a payment by hand, or send its final webhook again.",
            "parameters": [_TID, {"name": "status", "in": "query", "required": True,
                                  "schema": {"type": "string", "enum": ["SUCCESS", "FAILED"]}}],
            "responses": {
                "202": _json("TriggerAccepted", "Settled, or the webhook queued again."),
                "404": not_found,
                "409": _problem("The payment is final with the other status."),
                "422": _problem("`status` is missing or not SUCCESS/FAILED."),
                "503": _UNAVAILABLE,
            },
        }},
        "/api/payment/unresolved": {"get": {
            "operationId": "listUnresolvedPayments",
            "summary": "Payments whose outcome is not known, by id.",
            "parameters": _PAGING,
            "responses": {"200": _json("UnresolvedPage", "One page."), "422": bad_paging,
                          "503": _UNAVAILABLE},
        }},
        "/api/webhooks/dead": {"get": {
            "operationId": "listDeadWebhooks",
            "summary": "Deliveries that used up their attempts, by id.",
            "parameters": _PAGING,
            "responses": {"200": _json("DeadLetterPage", "One page.") | {"links": {
                "redeliverWebhook": {"operationId": "redeliverWebhook",
                                     "parameters": {"id": "$response.body#/deliveries/0/id"}},
            }}, "422": bad_paging, "503": _UNAVAILABLE},
        }},
        "/api/webhooks/{id}/redeliver": {"post": {
            "operationId": "redeliverWebhook",
            "summary": "Send a DEAD delivery again, with a fresh attempt budget.",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT}}],
            "responses": {
                "202": _json("RedeliverAccepted", "PENDING again."),
                "404": _problem("No DEAD delivery has this id."),
                "503": _UNAVAILABLE,
            },
        }},
        "/health": {"get": {
            "operationId": "health",
            "summary": "200 when the database answers.",
            "responses": {"200": _json("Health", "Healthy."), "503": _UNAVAILABLE},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                  "content": {JSON: {"schema": {"type": "object"}}}}},
        }},
    }  # fmt: skip


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these settings (the amount maximum comes from them)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hamster payment gateway engine",
            "version": "0.1.0",
            "description": "Amounts are integers in the currency's minor unit. Every error is "
            "application/problem+json (RFC 9457); 404 and 405 for unknown paths and methods too.",
        },
        "paths": _paths(),
        "components": {"schemas": _schemas(settings)},
    }


async def serve(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    return web.json_response(document(request.app[app_module.SETTINGS]))
