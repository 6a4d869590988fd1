"""The OpenAPI 3.1 document: it is valid, it covers every route, and the live app keeps to it."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from pytest_aiohttp import AiohttpClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from api.app import create_app
from api.auth import BROWSER, PUBLIC
from api.ops import openapi
from config.settings import Settings
from engine.reports import query
from engine.store.repository import Repository
from simulator.server import SimulatorHandle
from tests.conftest import MID, SEED_REQUEST
from tests.integration.checkout_support import ORDER, publishable, shopper

PROBLEM = "application/problem+json"
# Where the document is registered for $ref resolution; its refs are all "#/components/...".
DOC_URI = "urn:hamster:openapi"
FORMATS = FormatChecker()


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator for `schema`, resolving its refs inside `doc`."""
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
    if "$ref" in schema:
        schema = {"$ref": f"{DOC_URI}{schema['$ref']}"}
    return Draft202012Validator(schema, registry=registry, format_checker=FORMATS)


def component(doc: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator for one schema of the document's components."""
    return schema_validator(doc, {"$ref": f"#/components/schemas/{name}"})


def assert_valid(validator: Draft202012Validator, body: Any, what: str) -> None:
    """Every error of `body` against `validator`, in one message."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, f"{what} does not match its schema: {errors}\nbody: {body!r}"


async def conforms(
    doc: dict[str, Any], method: str, template: str, resp: aiohttp.ClientResponse
) -> Any:
    """Assert `resp` is a documented response of the operation, of its content type and schema."""
    text = await resp.text()
    operation = doc["paths"][template][method.lower()]
    documented = operation["responses"]
    assert str(resp.status) in documented, (
        f"{method} {template}: {resp.status} undocumented: {text}"
    )
    response = documented[str(resp.status)]
    # One media type, or several where the caller chooses (Accept: JSON or the page).
    assert resp.content_type in response["content"], (resp.content_type, response)
    for name, header in response.get("headers", {}).items():
        assert not header.get("required") or name in resp.headers, name
    body = json.loads(text)
    schema = response["content"][resp.content_type]["schema"]
    assert_valid(schema_validator(doc, schema), body, f"{method} {template} {resp.status}")
    return body


def test_formats_are_checked() -> None:
    # Without rfc3339-validator jsonschema would pass any "date-time" silently.
    assert "date-time" in FORMATS.checkers
    assert not FORMATS.conforms("2026-01-01 12:00", "date-time")


def test_document_validates_as_openapi_31(settings: Settings) -> None:
    doc = openapi.document(settings)
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)
    # Every component is itself a valid JSON Schema 2020-12 schema.
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_amount_is_a_bounded_integer_from_settings(settings: Settings) -> None:
    amount = openapi.document(settings)["components"]["schemas"]["PaymentRequest"]["properties"][
        "amount"
    ]
    assert amount["type"] == "integer"
    assert amount["exclusiveMinimum"] == 0
    assert amount["maximum"] == settings.max_amount
    other = settings.model_copy(update={"max_amount": 12345})
    doc = openapi.document(other)
    assert (
        doc["components"]["schemas"]["PaymentRequest"]["properties"]["amount"]["maximum"] == 12345
    )
    validator = component(doc, "PaymentRequest")
    assert validator.is_valid({**SEED_REQUEST, "amount": 12345})
    for bad in (12346, 0, -1, 1.5, "1", True, None):
        assert not validator.is_valid({**SEED_REQUEST, "amount": bad}), bad


def test_the_seeds_paths_are_documented_as_aliases(settings: Settings) -> None:
    paths = openapi.document(settings)["paths"]
    aliases = {
        "/api/payment": "/api/payments",
        "/api/payment/transaction/{tid}": "/api/payments/{tid}",
        "/api/payment/transaction/{tid}/webhooks": "/api/payments/{tid}/webhooks",
        "/api/payment/webhook/trigger/{tid}": "/api/payments/{tid}/webhook-trigger",
        "/api/payment/unresolved": "/api/payments/unresolved",
    }
    for seed, path in aliases.items():
        for method, alias in paths[seed].items():
            operation = paths[path][method]
            assert alias["operationId"] == operation["operationId"] + "SeedPath"
            assert f"the same as {method.upper()} {path}" in alias["summary"]
            assert (alias["responses"], alias.get("parameters")) == (
                operation["responses"],
                operation.get("parameters"),
            )
    # /api/payments both pays and lists.
    assert set(paths["/api/payments"]) == {"get", "post"}


def test_request_bodies_refuse_unknown_members(settings: Settings) -> None:
    # As the handlers do (422 naming the member): a misspelt member is an error, not ignored.
    doc = openapi.document(settings)
    schemas = doc["components"]["schemas"]
    requests = [name for name in schemas if name.endswith("Request")]
    assert {"PaymentRequest", "RefundRequest", "EndpointRequest", "IssueRequest"} <= set(requests)
    for name in requests:
        assert schemas[name]["additionalProperties"] is False, name
    pay = component(doc, "PaymentRequest")
    assert not pay.is_valid({**SEED_REQUEST, "curency": "USD"})
    # echo is the merchant's own JSON: any member goes there.
    assert pay.is_valid({**SEED_REQUEST, "echo": {"curency": "USD", "x": [1]}})


def test_every_route_is_documented(settings: Settings) -> None:
    app = create_app(settings)
    doc = openapi.document(settings)
    routed: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        if isinstance(resource, web.StaticResource) or resource.canonical.startswith(openapi.PAGES):
            continue  # files, and the back office's pages: HTML for people, not the API
        for route in resource:
            if route.method != "HEAD":
                routed.add((route.method.lower(), resource.canonical))
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert routed == documented
    assert ("get", "/openapi.json") in routed
    # And every error the document names is a problem+json; but the customer app's pages,
    # which answer a person with a page (the login form again), and its confirm and cancel,
    # whose refusal is what they did (ActionResult) or the payment page saying so.
    pages = {
        ("post", "/app/login", "401"): ["text/html"],
        ("post", "/app/login", "429"): ["text/html"],
        ("post", "/app/pay/{id}/confirm", "409"): ["application/json", "text/html"],
        ("post", "/app/pay/{id}/cancel", "409"): ["application/json", "text/html"],
    }
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if (method, path, status) in pages:
                    assert list(response["content"]) == pages[method, path, status]
                elif int(status) >= 400:
                    assert list(response["content"]) == [PROBLEM], (method, path, status)
                    ref = response["content"][PROBLEM]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Problem"


async def test_served_document_is_the_settings_document(
    client: TestClient, settings: Settings
) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    served = await conforms(openapi.document(settings), "GET", "/openapi.json", resp)
    assert served == openapi.document(settings)


async def test_live_responses_match_the_document(
    client: TestClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    doc = openapi.document(settings)
    pay, lookup = "/api/payment", "/api/payment/transaction/{tid}"

    resp = await client.post(pay, json=SEED_REQUEST)
    assert resp.status == 202, await resp.text()
    tid = (await conforms(doc, "POST", pay, resp))["transactionId"]

    resp = await client.get(lookup.format(tid=tid))
    assert resp.status == 200
    await conforms(doc, "GET", lookup, resp)

    resp = await client.post(pay, json=SEED_REQUEST)
    assert resp.status == 200
    assert (await conforms(doc, "POST", pay, resp))["transactionId"] == tid

    resp = await client.post(pay, json={**SEED_REQUEST, "amount": 1})
    assert resp.status == 409
    assert (await conforms(doc, "POST", pay, resp))["transactionId"] == tid

    resp = await client.get(lookup.format(tid="DUMMY_20260101_00000000"))
    assert resp.status == 404
    await conforms(doc, "GET", lookup, resp)

    resp = await client.post(pay, json={**SEED_REQUEST, "amount": "10000"})
    assert resp.status == 422
    body = await conforms(doc, "POST", pay, resp)
    assert body["field"] == "amount" and body["errors"][0]["field"] == "amount"

    resp = await client.post(pay, data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    await conforms(doc, "POST", pay, resp)

    # 405 belongs to no operation: it is a Problem, and Allow names the documented methods.
    resp = await client.get(pay)
    assert resp.status == 405
    assert resp.content_type == PROBLEM
    assert_valid(component(doc, "Problem"), await resp.json(), "405")
    assert set(resp.headers["Allow"].split(",")) == {"POST"}
    resp = await client.get("/api/nothing")
    assert resp.status == 404 and resp.content_type == PROBLEM
    assert_valid(component(doc, "Problem"), await resp.json(), "unknown route 404")


async def test_operational_responses_match_the_document(
    client: TestClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    doc = openapi.document(settings)
    trigger = "/api/payment/webhook/trigger/{tid}"
    hooks = "/api/payment/transaction/{tid}/webhooks"
    first = await (await client.post("/api/payment", json=SEED_REQUEST)).json()
    tid = first["transactionId"]
    second = {**SEED_REQUEST, "orderId": "ORD_UNRESOLVED"}
    other = (await (await client.post("/api/payment", json=second)).json())["transactionId"]

    resp = await client.post(trigger.format(tid=tid), params={"status": "SUCCESS"})
    assert resp.status == 202, await resp.text()
    assert (await conforms(doc, "POST", trigger, resp))["action"] == "settled"
    resp = await client.post(trigger.format(tid=tid), params={"status": "FAILED"})
    assert resp.status == 409
    assert (await conforms(doc, "POST", trigger, resp))["currentStatus"] == "SUCCESS"
    resp = await client.post(trigger.format(tid=tid), params={"status": "nope"})
    assert resp.status == 422
    await conforms(doc, "POST", trigger, resp)
    resp = await client.post(
        trigger.format(tid="DUMMY_20260101_00000000"), params={"status": "FAILED"}
    )
    assert resp.status == 404
    await conforms(doc, "POST", trigger, resp)

    resp = await client.get(hooks.format(tid=tid))
    assert resp.status == 200
    [delivery] = (await conforms(doc, "GET", hooks, resp))["deliveries"]

    # Bring about the states the lists show, as the worker would have left them.
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'DEAD', attempts = 8, last_error = 'refused'"
    )
    await pool.execute(
        "UPDATE payment_processes SET status = 'UNRESOLVED', unresolved_reason = 'timeout',"
        " outcome_unknown_since = now(), attempts = 3 WHERE tid = $1",
        other,
    )
    for path, key in (
        ("/api/webhooks/dead", "deliveries"),
        ("/api/payment/unresolved", "payments"),
    ):
        resp = await client.get(path, params={"limit": "1"})
        assert resp.status == 200, await resp.text()
        page = await conforms(doc, "GET", path, resp)
        # A full page: `next` is the cursor of the following one (an id, opaque for payments).
        assert len(page[key]) == 1 and isinstance(page["next"], int), page
        resp = await client.get(path, params={"limit": "0"})
        assert resp.status == 422
        await conforms(doc, "GET", path, resp)

    redeliver = "/api/webhooks/{id}/redeliver"
    resp = await client.post(redeliver.format(id=delivery["id"]))
    assert resp.status == 202, await resp.text()
    await conforms(doc, "POST", redeliver, resp)
    resp = await client.post(redeliver.format(id=delivery["id"]))
    assert resp.status == 404
    await conforms(doc, "POST", redeliver, resp)

    resp = await client.get("/health")
    assert resp.status == 200
    await conforms(doc, "GET", "/health", resp)


@pytest.mark.parametrize(
    "body",
    [{"ok": True, "extra": 1}, {"ok": False}],
    ids=["extra-member", "wrong-value"],
)
def test_response_schemas_are_strict(settings: Settings, body: dict[str, Any]) -> None:
    # Success bodies are closed: a handler that starts returning more fails the tests above.
    assert not component(openapi.document(settings), "Health").is_valid(body)


def test_every_api_operation_needs_the_bearer_key(settings: Settings) -> None:
    doc = openapi.document(settings)
    scheme = doc["components"]["securitySchemes"][openapi.SECURITY_SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "security" not in doc  # per operation, so the public ones stay public
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "options" and path.startswith(BROWSER):
                # A CORS preflight: browsers send it without credentials, by design.
                assert operation["security"] == [], path
            elif path in PUBLIC and path.startswith("/api/"):
                # A provider's callback: no key, its own signature (documented as such).
                assert operation["security"] == [], path
            elif path.startswith("/api/"):
                assert operation["security"] == [{openapi.SECURITY_SCHEME: []}], (method, path)
                unauthorized = operation["responses"]["401"]
                assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
            elif path.startswith("/app/"):
                # The customer app: its own cookie sign-in (401 when signed out), no API key.
                assert "security" not in operation, path
            elif path == "/metrics":
                # ENGINE_METRICS_TOKEN, when set, is its own bearer token, not an API key.
                assert "security" not in operation and "401" in operation["responses"]
            else:
                assert "security" not in operation and "401" not in operation["responses"], path
    # 403 where a key may be refused an action: another merchant's echo.mid, a live key's
    # settle by hand, a key of the other mode asked for.
    forbidden = {
        (method, path)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if "403" in operation["responses"]
        # Checkout's and the app's own refusals (a key of the wrong kind, CSRF) are apart.
        and not path.startswith(("/app/", "/api/checkout/", "/api/public/checkout/"))
    }
    assert forbidden == {
        ("post", "/api/payments"),
        ("post", "/api/payment"),
        ("post", "/api/payments/{tid}/webhook-trigger"),
        ("post", "/api/payment/webhook/trigger/{tid}"),
        ("post", "/api/keys"),
    }
    body = doc["components"]["schemas"]["PaymentRequest"]["properties"]
    assert body["provider"]["enum"] == ["card", "atom"] and body["provider"]["default"] == "card"
    name = body["orderName"]["anyOf"][0]
    assert (name["type"], name["minLength"], name["maxLength"]) == ("string", 1, 200)


def test_history_filters_are_the_handlers(settings: Settings) -> None:
    params = {
        p["name"]: p["schema"]
        for p in openapi.document(settings)["paths"]["/api/payments"]["get"]["parameters"]
    }
    for name, allowed in (("status", query.STATUSES), ("kind", query.KINDS)):
        pattern = re.compile(params[name]["pattern"])
        assert all(pattern.fullmatch(v) for v in allowed), name
        assert pattern.fullmatch(",".join(sorted(allowed))), name
        assert not pattern.fullmatch("NOPE") and not pattern.fullmatch(""), name
        assert not pattern.fullmatch(next(iter(allowed)) + ","), name
    assert params["limit"]["maximum"] == query.MAX_LIMIT
    assert params["q"]["maxLength"] == query.MAX_SEARCH


async def test_auth_and_key_responses_match_the_document(
    client: TestClient, settings: Settings, api_key: str, repo: Repository
) -> None:
    doc = openapi.document(settings)
    pay, keys = "/api/payment", "/api/keys"
    roll, revoke = "/api/keys/{id}/roll", "/api/keys/{id}"
    trigger = "/api/payment/webhook/trigger/{tid}"

    resp = await client.post(pay, json=SEED_REQUEST, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert (await conforms(doc, "POST", pay, resp))["reason"] == "malformed"
    resp = await client.get(keys, headers={"Authorization": "Basic eDp5"})
    assert resp.status == 401
    await conforms(doc, "GET", keys, resp)
    other_echo = {**SEED_REQUEST, "echo": {"mid": "someone_else"}}
    resp = await client.post(pay, json=other_echo)
    assert resp.status == 403
    assert (await conforms(doc, "POST", pay, resp))["field"] == "echo.mid"

    resp = await client.get(keys)
    assert resp.status == 200
    [own] = (await conforms(doc, "GET", keys, resp))["keys"]
    # A test key issues test keys only.
    resp = await client.post(keys, json={"mode": "live"})
    assert resp.status == 403
    assert (await conforms(doc, "POST", keys, resp))["field"] == "mode"
    resp = await client.post(keys, json={})
    assert resp.status == 201
    made = await conforms(doc, "POST", keys, resp)
    resp = await client.post(keys, json={"mode": "nope"})
    assert resp.status == 422
    await conforms(doc, "POST", keys, resp)

    # Live keys come from the operator; a live payment is not settled by hand.
    live_key = await repo.merchants.issue_key(MID, "live", settings.api_key_secret)
    live = {"Authorization": f"Bearer {live_key.key}"}
    resp = await client.post(pay, json=SEED_REQUEST, headers=live)
    tid = (await resp.json())["transactionId"]
    resp = await client.post(trigger.format(tid=tid), params={"status": "SUCCESS"}, headers=live)
    assert resp.status == 403
    await conforms(doc, "POST", trigger, resp)

    resp = await client.post(roll.format(id=made["id"]), json={"graceSeconds": 60})
    assert resp.status == 201
    rolled = await conforms(doc, "POST", roll, resp)
    assert rolled["old"]["id"] == made["id"] and rolled["old"]["expiresAt"] is not None
    resp = await client.post(roll.format(id=made["id"]), json={"graceSeconds": -1})
    assert resp.status == 422
    await conforms(doc, "POST", roll, resp)
    resp = await client.delete(revoke.format(id=rolled["new"]["id"]))
    assert resp.status == 200
    assert (await conforms(doc, "DELETE", revoke, resp))["revokedAt"] is not None
    resp = await client.delete(revoke.format(id=rolled["new"]["id"]))
    assert resp.status == 404
    await conforms(doc, "DELETE", revoke, resp)
    resp = await client.post(roll.format(id=999_999))
    assert resp.status == 404
    await conforms(doc, "POST", roll, resp)
    assert own["prefix"] == api_key[:14]


async def test_refund_and_history_responses_match_the_document(
    client: TestClient, settings: Settings
) -> None:
    doc = openapi.document(settings)
    cancel, refunds = "/api/payments/{tid}/cancel", "/api/payments/{tid}/refunds"
    refund, events = "/api/refunds/{refund_id}", "/api/payments/{tid}/events"
    history = "/api/payments"
    paid = (await (await client.post("/api/payment", json=SEED_REQUEST)).json())["transactionId"]
    resp = await client.post(f"/api/payment/webhook/trigger/{paid}", params={"status": "SUCCESS"})
    assert resp.status == 202, await resp.text()
    other = {**SEED_REQUEST, "orderId": "ORD_CANCEL", "orderName": "To cancel"}
    pending = (await (await client.post("/api/payment", json=other)).json())["transactionId"]

    resp = await client.post(cancel.format(tid=pending))
    assert resp.status == 200, await resp.text()
    assert (await conforms(doc, "POST", cancel, resp))["status"] == "CANCELED"
    resp = await client.post(cancel.format(tid=paid))
    assert resp.status == 409
    await conforms(doc, "POST", cancel, resp)

    key = {"Idempotency-Key": "refund-1"}
    resp = await client.post(refunds.format(tid=paid), json={"amount": 400}, headers=key)
    assert resp.status == 202, await resp.text()
    made = await conforms(doc, "POST", refunds, resp)
    resp = await client.post(refunds.format(tid=paid), json={"amount": 400}, headers=key)
    assert resp.status == 200
    assert (await conforms(doc, "POST", refunds, resp))["refundId"] == made["refundId"]
    resp = await client.post(
        refunds.format(tid=paid), json={"amount": 10**6}, headers={"Idempotency-Key": "refund-2"}
    )
    assert resp.status == 409
    await conforms(doc, "POST", refunds, resp)
    resp = await client.post(refunds.format(tid=paid), json={"amount": 1})
    assert resp.status == 422
    await conforms(doc, "POST", refunds, resp)

    resp = await client.get(refunds.format(tid=paid))
    assert resp.status == 200
    assert [r["refundId"] for r in (await conforms(doc, "GET", refunds, resp))["refunds"]] == [
        made["refundId"]
    ]
    resp = await client.get(refund.format(refund_id=made["refundId"]))
    assert resp.status == 200
    await conforms(doc, "GET", refund, resp)
    resp = await client.get(refund.format(refund_id="RF00000000000"))
    assert resp.status == 404
    await conforms(doc, "GET", refund, resp)

    resp = await client.get(events.format(tid=paid))
    assert resp.status == 200
    assert len((await conforms(doc, "GET", events, resp))["events"]) >= 2
    resp = await client.get(history, params={"limit": "1"})
    assert resp.status == 200
    page = await conforms(doc, "GET", history, resp)
    assert len(page["items"]) == 1 and isinstance(page["next"], str)
    resp = await client.get(history, params={"cursor": page["next"]})
    assert resp.status == 200
    kinds = {i["kind"] for i in (await conforms(doc, "GET", history, resp))["items"]}
    assert kinds <= {"payment", "cancel", "refund"}
    resp = await client.get(history, params={"cursor": "forged"})
    assert resp.status == 422
    await conforms(doc, "GET", history, resp)


async def test_endpoint_and_limit_responses_match_the_document(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    api_key: str,
    sim: SimulatorHandle,
    pool: asyncpg.Pool,
) -> None:
    # Low caps, so that every limit answers too.
    tight = settings.model_copy(
        update={"max_webhook_endpoints": 2, "max_api_keys": 1, "webhook_resends_per_window": 1}
    )
    doc = openapi.document(tight)
    client = await aiohttp_client(create_app(tight), headers={"Authorization": f"Bearer {api_key}"})
    endpoints, one = "/api/webhook-endpoints", "/api/webhook-endpoints/{id}"
    roll, test = f"{one}/roll", f"{one}/test"
    url, other = (f"{sim.url}/api/webhook/pg/{name}" for name in ("DOC", "DOC2"))

    resp = await client.post(endpoints, json={"url": url, "description": "orders"})
    assert resp.status == 201, await resp.text()
    made = await conforms(doc, "POST", endpoints, resp)
    assert made["activeSecrets"] == 1
    resp = await client.post(endpoints, json={"url": url})
    assert resp.status == 409
    assert (await conforms(doc, "POST", endpoints, resp))["type"] == "/problems/endpoint-exists"
    resp = await client.post(endpoints, json={"url": other})
    assert resp.status == 201, await resp.text()
    await conforms(doc, "POST", endpoints, resp)
    for body, status, slug in (
        ({"url": f"{sim.url}/api/webhook/pg/DOC3"}, 409, "limit-reached"),
        ({"url": "http://127.0.0.1:1/x"}, 422, "destination-refused"),
        ({"url": "http://x/#frag"}, 422, "validation-error"),
    ):
        resp = await client.post(endpoints, json=body)
        assert resp.status == status, await resp.text()
        assert (await conforms(doc, "POST", endpoints, resp))["type"] == f"/problems/{slug}"

    resp = await client.get(endpoints)
    assert resp.status == 200
    assert len((await conforms(doc, "GET", endpoints, resp))["endpoints"]) == 2
    resp = await client.get(one.format(id=made["id"]))
    assert resp.status == 200
    await conforms(doc, "GET", one, resp)
    resp = await client.post(roll.format(id=made["id"]), json={"graceSeconds": 60})
    assert resp.status == 201, await resp.text()
    assert (await conforms(doc, "POST", roll, resp))["activeSecrets"] == 2
    resp = await client.post(roll.format(id=made["id"]), json={"graceSeconds": -1})
    assert resp.status == 422
    await conforms(doc, "POST", roll, resp)
    resp = await client.post(
        roll.format(id=made["id"]), data=b"{", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    await conforms(doc, "POST", roll, resp)
    resp = await client.post(test.format(id=made["id"]))
    assert resp.status == 200, await resp.text()
    await conforms(doc, "POST", test, resp)
    resp = await client.post(test.format(id=made["id"]))
    assert resp.status == 429
    await conforms(doc, "POST", test, resp)

    # A payment names a registered endpoint, or is refused.
    resp = await client.post("/api/payment", json={**SEED_REQUEST, "webhookUrl": f"{url}/x"})
    assert resp.status == 422
    assert (await conforms(doc, "POST", "/api/payment", resp))["field"] == "webhookUrl"
    resp = await client.post("/api/payment", json={**SEED_REQUEST, "webhookUrl": url})
    assert resp.status == 202, await resp.text()
    tid = (await conforms(doc, "POST", "/api/payment", resp))["transactionId"]

    resp = await client.get(one.format(id=999_999))
    assert resp.status == 404
    await conforms(doc, "GET", one, resp)
    resp = await client.post(test.format(id=999_999))
    assert resp.status == 404
    await conforms(doc, "POST", test, resp)
    resp = await client.delete(one.format(id=made["id"]))
    assert resp.status == 200
    deleted = await conforms(doc, "DELETE", one, resp)
    assert (deleted["deleted"], deleted["activeSecrets"]) == (True, 0)
    resp = await client.delete(one.format(id=made["id"]))
    assert resp.status == 404
    await conforms(doc, "DELETE", one, resp)

    # The manual trigger's limits: one webhook per payment in the window, PENDING only.
    trigger = "/api/payment/webhook/trigger/{tid}"
    resp = await client.post(trigger.format(tid=tid), params={"status": "SUCCESS"})
    assert resp.status == 202, await resp.text()
    resp = await client.post(trigger.format(tid=tid), params={"status": "SUCCESS"})
    assert resp.status == 429, await resp.text()
    await conforms(doc, "POST", trigger, resp)
    busy = {**SEED_REQUEST, "orderId": "ORD_BUSY"}
    busy_tid = (await (await client.post("/api/payment", json=busy)).json())["transactionId"]
    await pool.execute(
        "UPDATE payment_processes SET status = 'PROCESSING' WHERE tid = $1", busy_tid
    )
    resp = await client.post(trigger.format(tid=busy_tid), params={"status": "FAILED"})
    assert resp.status == 409
    assert (await conforms(doc, "POST", trigger, resp))["currentStatus"] == "PROCESSING"

    hooks = "/api/payment/transaction/{tid}/webhooks"
    resp = await client.get(hooks.format(tid=tid), params={"limit": "1"})
    assert resp.status == 200
    page = await conforms(doc, "GET", hooks, resp)
    assert len(page["deliveries"]) == 1 and isinstance(page["next"], int), page
    resp = await client.get(hooks.format(tid=tid), params={"after": "-1"})
    assert resp.status == 422
    await conforms(doc, "GET", hooks, resp)

    # At most one key of this mode: the fixture's.
    resp = await client.post("/api/keys", json={})
    assert resp.status == 409
    assert (await conforms(doc, "POST", "/api/keys", resp))["limit"] == 1


async def test_checkout_and_app_responses_match_the_document(
    client: TestClient, repo: Repository, settings: Settings, sim: SimulatorHandle
) -> None:
    # The SDK (/sdk/v1/hamster.js) and the app's pages read these members by these names, in
    # this order: the bodies' bytes are the contract, the models only write them.
    doc = openapi.document(settings)
    sessions, one = "/api/checkout/sessions", "/api/checkout/sessions/{id}"
    public = "/api/public/checkout/sessions/{id}"
    confirm, pay_data = "/app/pay/{id}/confirm", "/app/api/pay/{id}"
    pk = {"Authorization": f"Bearer {await publishable(repo, settings)}"}

    resp = await client.post(sessions, json=ORDER, headers={"Idempotency-Key": "k-1"})
    assert resp.status == 201, await resp.text()
    made = await conforms(doc, "POST", sessions, resp)
    assert list(made) == [
        "id", "clientSecret", "status", "expiresAt", "amount", "currency", "orderId",
        "orderName", "customerRef", "successUrl", "cancelUrl", "paymentTid", "paymentStatus",
        "outcome",
    ]  # fmt: skip
    resp = await client.post(sessions, json=ORDER, headers={"Idempotency-Key": "k-1"})
    assert resp.status == 200
    assert await conforms(doc, "POST", sessions, resp) == made
    resp = await client.post(sessions, json={**ORDER, "currency": "XXY"})
    assert resp.status == 422
    assert (await conforms(doc, "POST", sessions, resp))["field"] == "currency"
    resp = await client.get(one.format(id=made["id"]))
    assert resp.status == 200
    assert await conforms(doc, "GET", one, resp) == made

    secret = {"clientSecret": made["clientSecret"]}
    resp = await client.get(public.format(id=made["id"]), params=secret, headers=pk)
    assert resp.status == 200
    assert list(await conforms(doc, "GET", public, resp)) == [
        "id", "status", "merchantName", "amount", "currency", "orderName", "expiresAt", "qr",
        "appUrl", "payment", "action", "outcome", "final", "version",
    ]  # fmt: skip
    resp = await client.post(
        public.format(id=made["id"]) + "/pay", params=secret, json={"method": "card"}, headers=pk
    )
    assert resp.status == 422
    assert (await conforms(doc, "POST", public + "/pay", resp))["field"] == "method"

    jane = await shopper(repo, sim)
    resp = await client.get(pay_data.format(id=made["id"]), headers=jane.headers())
    assert resp.status == 200
    data = await conforms(doc, "GET", pay_data, resp)
    assert list(data) == [
        "session", "amount_text", "card", "payment", "outcome", "error", "return_url", "csrf",
    ]  # fmt: skip
    assert data["csrf"] == jane.csrf and data["card"]["last4"] == "4242"
    resp = await client.post(confirm.format(id=made["id"]), headers=jane.headers())
    assert resp.status == 200
    done = await conforms(doc, "POST", confirm, resp)
    assert list(done) == ["changed", "reason", "session"] and done["changed"] is True
    assert list(done["session"]["payment"]) == [
        "tid", "status", "amount", "currency", "approvalNo", "failureReason",
    ]  # fmt: skip
    resp = await client.post(confirm.format(id=made["id"]), headers=jane.headers())
    assert resp.status == 409
    assert (await conforms(doc, "POST", confirm, resp))["changed"] is False
    resp = await client.get("/app/api/history", headers=jane.headers())
    assert resp.status == 200
    [item] = (await conforms(doc, "GET", "/app/api/history", resp))["items"]
    assert list(item) == [
        "merchantName", "orderName", "amount", "currency", "amount_text", "status",
        "created_text", "createdAt", "tid", "refundedAmount", "refunds",
    ]  # fmt: skip
    resp = await client.get("/app/api/history")
    assert resp.status == 401
    await conforms(doc, "GET", "/app/api/history", resp)
