"""A merchant's own webhook endpoints: register, list, roll the secret, delete, send a test.

An endpoint belongs to one merchant in one mode (that of the key that registered it), and its
secret is made here and shown once. Deliveries are signed with the secrets of the endpoint
the payment names, never looked up by url, so no merchant can have its webhooks signed with
another's secret, and the operator's default secret is never a merchant's.
"""

from __future__ import annotations

import math
import re
import time
from secrets import token_hex

from aiohttp import web
from pydantic import AnyHttpUrl, ValidationError

from api import auth, problems, responses, state
from api import body as request_body
from api.operations import UNAVAILABLE, documented, id_in_path, id_links, path_id, too_many
from api.schemas.endpoints import (
    Endpoint,
    EndpointCreated,
    EndpointDeleted,
    EndpointList,
    EndpointRequest,
    EndpointRollRequest,
    EndpointTestResult,
)
from engine import errors, models
from engine.errors import WebhookRetryable
from engine.models import Delivery
from engine.webhooks import egress, sending, signing

# Printable ASCII without spaces: what a URL on the wire is. Anything else is refused rather
# than normalised, since a payment's webhookUrl must match it exactly.
_URL_CHARS = re.compile(r"^[\x21-\x7e]{1,2048}$")
# Another merchant's endpoint, or the other mode's, is not found either.
_NOT_FOUND = "This merchant has no active webhook endpoint with this id in the key's mode."
_BAD_JSON = (
    "The body is not JSON: malformed, not UTF-8, duplicate keys, too deep;"
    " or it could not be read as its headers describe it."
)


def check_url(url: str) -> str:
    """The url if it may be registered by its form (where it points is checked apart)."""
    if not _URL_CHARS.match(url):
        raise problems.validation("url", "must be printable ASCII with no spaces")
    try:
        parsed = AnyHttpUrl(url)
    except ValidationError:
        raise problems.validation("url", "must be an absolute http or https URL") from None
    if parsed.username or parsed.password:
        raise problems.validation("url", "must not carry a user name or password")
    if parsed.fragment is not None:
        raise problems.validation("url", "must not have a #fragment")
    return url


def _endpoint_id(request: web.Request) -> int:
    return id_in_path(request, lambda raw: errors.EndpointNotFound(raw[:40]))


@documented(
    "createEndpoint",
    "Register a webhook endpoint of the key's mode; its signing secret is shown this once.",
    body=EndpointRequest,
    ok={201: (EndpointCreated, "Registered, with its secret.")},
    # The stateful links stop short of the test event: it calls the registered url.
    links={201: id_links(("getEndpoint", "rollEndpointSecret", "deleteEndpoint"))},
    problems={
        400: _BAD_JSON,
        409: "The url is registered already in this mode (/problems/endpoint-exists,"
        " `field` url: roll its secret instead), or the merchant has as many"
        " endpoints in this mode as it may have (/problems/limit-reached,"
        " `limit` says how many).",
        422: "A member is missing, unknown or invalid (/problems/validation-error,"
        " `field` names it), or the url's destination is refused"
        " (/problems/destination-refused, `field` url, `reason` says why).",
        503: UNAVAILABLE,
    },
)
async def create_endpoint(request: web.Request) -> web.Response:
    """POST /api/webhook-endpoints: 201 with the endpoint and its secret, shown once."""
    req = await request_body.model_of(request, EndpointRequest)
    who = auth.caller(request)
    created, secret = await register(request.app, who.mid, who.mode, req.url, req.description)
    return responses.send(EndpointCreated.of(created, secret=secret), 201)


async def register(
    app: web.Application, mid: str, mode: str, url: str, description: str | None
) -> tuple[models.Endpoint, str]:
    """Register `url` for merchant `mid` in `mode`: the endpoint and its secret (shown once).

    The API and the back office both register through here.
    """
    url = check_url(url)
    settings = app[state.SETTINGS]
    try:
        # Where it points now; the worker checks again before every attempt (DNS changes).
        await egress.check_url(url, egress.policy_from(settings))
    except egress.EgressRefused as exc:
        raise problems.Problem(
            422,
            "Unprocessable Content",
            f"url: this destination is refused ({exc.reason})",
            slug="destination-refused",
            field="url",
            extra={"reason": exc.reason},
        ) from None
    secret = signing.new_secret()
    created = await app[state.REPO].endpoints.add_endpoint(
        mid,
        mode,
        url,
        secret,
        description=description,
        max_endpoints=settings.max_webhook_endpoints,
    )
    if created is None:
        raise errors.TooMany("webhook endpoints", settings.max_webhook_endpoints)
    return created, secret


@documented(
    "listEndpoints",
    "The merchant's active endpoints of the key's mode, oldest first.",
    ok={200: (EndpointList, "The endpoints (no secrets).")},
    problems={503: UNAVAILABLE},
)
async def list_endpoints(request: web.Request) -> web.Response:
    """GET /api/webhook-endpoints: the caller's endpoints in its mode, without secrets."""
    who = auth.caller(request)
    found = await request.app[state.REPO].endpoints.endpoints(who.mid, who.mode)
    return responses.send(EndpointList(endpoints=[Endpoint.of(e) for e in found]))


@documented(
    "getEndpoint",
    "One endpoint (never its secrets).",
    params=[path_id("id")],
    ok={200: (Endpoint, "The endpoint.")},
    problems={404: _NOT_FOUND, 503: UNAVAILABLE},
)
async def get_endpoint(request: web.Request) -> web.Response:
    """GET /api/webhook-endpoints/{id}."""
    endpoint_id = _endpoint_id(request)
    who = auth.caller(request)
    found = await request.app[state.REPO].endpoints.endpoint(who.mid, who.mode, endpoint_id)
    if found is None:
        raise errors.EndpointNotFound(endpoint_id)
    return responses.send(Endpoint.of(found))


@documented(
    "rollEndpointSecret",
    "A new secret now; the old ones sign `graceSeconds` more, then stop.",
    params=[path_id("id")],
    body=EndpointRollRequest,
    body_required=False,
    ok={201: (EndpointCreated, "The endpoint with its new secret, shown once.")},
    problems={
        400: _BAD_JSON,
        404: _NOT_FOUND,
        422: "A member is unknown or invalid; `field` names it.",
        503: UNAVAILABLE,
    },
)
async def roll_endpoint(request: web.Request) -> web.Response:
    """POST /api/webhook-endpoints/{id}/roll: a new secret now, the old ones for a grace time.

    Meanwhile every delivery carries a signature under each, so the merchant can switch over
    without missing a webhook.
    """
    endpoint_id = _endpoint_id(request)
    req = await request_body.model_of(request, EndpointRollRequest, empty_ok=True)
    who = auth.caller(request)
    repo = request.app[state.REPO]
    secret = signing.new_secret()
    if not await repo.endpoints.roll_endpoint(
        who.mid, who.mode, endpoint_id, secret, req.grace_seconds
    ):
        raise errors.EndpointNotFound(endpoint_id)
    found = await repo.endpoints.endpoint(who.mid, who.mode, endpoint_id)
    if found is None:  # deleted between the two statements
        raise errors.EndpointNotFound(endpoint_id)
    return responses.send(EndpointCreated.of(found, secret=secret), 201)


@documented(
    "deleteEndpoint",
    "The endpoint receives nothing more, at once; its secrets stop.",
    params=[path_id("id")],
    ok={200: (EndpointDeleted, "Deleted.")},
    problems={404: _NOT_FOUND, 503: UNAVAILABLE},
)
async def delete_endpoint(request: web.Request) -> web.Response:
    """DELETE /api/webhook-endpoints/{id}: it receives nothing more, at once."""
    endpoint_id = _endpoint_id(request)
    who = auth.caller(request)
    deleted = await request.app[state.REPO].endpoints.delete_endpoint(
        who.mid, who.mode, endpoint_id
    )
    if deleted is None:
        raise errors.EndpointNotFound(endpoint_id)
    return responses.send(EndpointDeleted.of(deleted, deleted=True))


class TestPacer:
    """At most one test event per endpoint every `interval` seconds, in bounded memory."""

    MAX_ENTRIES = 10_000

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[int, float] = {}

    def wait_for(self, endpoint_id: int) -> float:
        """0 and the send is counted, or the seconds to wait before the next one."""
        now = time.monotonic()
        last = self._last.get(endpoint_id)
        if last is not None and now - last < self.interval:
            return self.interval - (now - last)
        if len(self._last) >= self.MAX_ENTRIES:
            self._last.clear()
        self._last[endpoint_id] = now
        return 0.0


PACER = web.AppKey("endpoint_test_pacer", TestPacer)
TEST_INTERVAL_SECONDS = 5.0


@documented(
    "testEndpoint",
    "Send the endpoint a signed TEST event now, as a delivery would go, and say what it answered.",
    params=[path_id("id")],
    ok={200: (EndpointTestResult, "Sent, or refused: `delivered` says which.")},
    problems={
        404: _NOT_FOUND,
        429: too_many("One test event per endpoint every few seconds (/problems/test-limited)."),
        503: UNAVAILABLE,
    },
)
async def send_test(request: web.Request) -> web.Response:
    """POST /api/webhook-endpoints/{id}/test: send a signed TEST event now, report the answer."""
    endpoint_id = _endpoint_id(request)
    who = auth.caller(request)
    return responses.send(await test_event(request.app, who.mid, who.mode, endpoint_id))


async def test_event(
    app: web.Application, mid: str, mode: str, endpoint_id: int
) -> EndpointTestResult:
    """Send a signed TEST event to merchant `mid`'s endpoint now; what it answered.

    It goes out exactly as a delivery would (same signature, same egress policy, no redirects)
    and is not stored: the answer is the endpoint's status code, or the reason it failed. The
    API and the back office both send through here.
    """
    repo = app[state.REPO]
    endpoint = await repo.endpoints.endpoint(mid, mode, endpoint_id)
    if endpoint is None:
        raise errors.EndpointNotFound(endpoint_id)
    wait = app[PACER].wait_for(endpoint_id)
    if wait:
        raise problems.Problem(
            429,
            "Too Many Requests",
            "one test event per endpoint every few seconds",
            slug="test-limited",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    settings = app[state.SETTINGS]
    secrets = await repo.endpoints.secrets_of_endpoint(mid, mode, endpoint_id)
    event = Delivery(
        id=0,
        event_id=f"evt_test_{token_hex(10)}",
        event_status=sending.TEST_EVENT,
        url=endpoint.url,
        attempts=1,
        payment_id=0,
        tid="",
        amount=0,
        currency="",
        approval_no=None,
        fail_reason=None,
        echo={},
        mid=mid,
        mode=mode,
        endpoint_id=endpoint_id,
    )
    error: str | None
    status: int | None
    try:
        code = await sending.send(
            app[state.WEBHOOK_SESSION],
            event,
            timeout=settings.webhook_timeout_seconds,
            secrets=secrets,
            policy=egress.policy_from(settings),
        )
    except egress.EgressRefused as exc:
        delivered, error, status = False, f"refused:{exc.reason}", None
    except WebhookRetryable as exc:
        delivered, error, status = False, exc.error, exc.status
    else:
        delivered, error, status = True, None, code
    return EndpointTestResult(
        endpoint_id=endpoint_id,
        event_id=event.event_id,
        delivered=delivered,
        error=error,
        response_code=status,
    )


ROUTES = [
    web.post("/api/webhook-endpoints", create_endpoint),
    web.get("/api/webhook-endpoints", list_endpoints),
    web.get("/api/webhook-endpoints/{id}", get_endpoint),
    web.post("/api/webhook-endpoints/{id}/roll", roll_endpoint),
    web.delete("/api/webhook-endpoints/{id}", delete_endpoint),
    web.post("/api/webhook-endpoints/{id}/test", send_test),
]
