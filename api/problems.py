"""Errors as application/problem+json (RFC 9457), mapped from our errors in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from api import responses
from api.schemas.problem import Problem as ProblemBody
from engine import errors, metrics
from engine.store.base import DRIVER_UNAVAILABLE

log = structlog.get_logger()

CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP problem to answer with; `field` names the offending input, if one."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.field = field
        self.extra = extra or {}
        self.headers = headers or {}

    def response(self, instance: str | None = None) -> web.Response:
        """The problem+json response."""
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}" if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return responses.send(
            ProblemBody.model_validate(body),
            self.status,
            content_type=CONTENT_TYPE,
            headers=self.headers,
            exclude_unset=True,
        )


def validation(field: str, message: str, errors_: list[dict[str, str]] | None = None) -> Problem:
    """422 naming the first failing field, with every failure listed."""
    return Problem(
        422,
        "Unprocessable Content",
        f"{field}: {message}",
        slug="validation-error",
        field=field,
        extra={"errors": errors_ or [{"field": field, "message": message}]},
    )


# Each engine error that needs nothing but its detail: status, slug, the field it names.
_PLAIN: dict[type[errors.PaymentError], tuple[int, str, str | None]] = {
    errors.PaymentNotFound: (404, "payment-not-found", None),
    errors.Forbidden: (403, "forbidden", None),
    errors.MerchantNotFound: (404, "merchant-not-found", None),
    errors.DeliveryNotFound: (404, "delivery-not-found", None),
    errors.EndpointNotFound: (404, "endpoint-not-found", None),
    errors.EndpointExists: (409, "endpoint-exists", "url"),
}


def _conflict(detail: str, slug: str, field: str | None, **extra: Any) -> Problem:
    return Problem(409, "Conflict", detail, slug=slug, field=field, extra=extra)


def _from_engine(exc: errors.PaymentError) -> Problem:
    plain = _PLAIN.get(type(exc))
    if plain is not None:
        status, slug, field = plain
        return Problem(status, HTTPStatus(status).phrase, exc.detail, slug=slug, field=field)
    if isinstance(exc, errors.IdempotencyConflict):
        return _conflict(exc.detail, "idempotency-conflict", exc.field, transactionId=exc.tid)
    if isinstance(exc, errors.RefundExceedsCaptured):
        return _conflict(exc.detail, "refund-exceeds-captured", "amount", refundable=exc.refundable)
    if isinstance(exc, errors.StateConflict):
        return _conflict(exc.detail, "state-conflict", "status", currentStatus=exc.current)
    if isinstance(exc, errors.TooMany):
        return _conflict(exc.detail, "limit-reached", None, limit=exc.limit)
    if isinstance(exc, errors.InvalidField):
        return validation(exc.field, exc.message)
    if isinstance(exc, errors.OperatorActionRefused):
        return _conflict(exc.detail, "action-refused", None)
    if isinstance(exc, errors.UnknownWebhookUrl):
        return validation("webhookUrl", exc.detail)
    if isinstance(exc, errors.ResendLimited):
        return Problem(
            429,
            "Too Many Requests",
            exc.detail,
            slug="resend-limited",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, errors.DatabaseUnavailable):
        return Problem(
            503,
            "Service Unavailable",
            exc.detail,
            slug="database-unavailable",
            headers={"Retry-After": "1"},
        )
    return Problem(400, "Bad Request", exc.detail)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into problem+json; never let bad input become a 500."""
    try:
        return await handler(request)
    except Problem as p:
        return p.response(request.path)
    except errors.PaymentError as exc:
        return _from_engine(exc).response(request.path)
    except DRIVER_UNAVAILABLE as exc:
        # A database call that no store translated (a pool acquired by hand): the database
        # is away all the same, as while Patroni promotes a standby. 503, never a 500.
        log.warning("api.database_unavailable", path=request.path, error=repr(exc))
        return _from_engine(errors.DatabaseUnavailable()).response(request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's 405 names the path's methods in its Allow header (RFC 9110 requires it).
        allow = exc.headers.get("Allow", "") if exc.status == 405 else ""
        detail = {
            404: f"no such resource: {request.path}",
            405: f"{request.method} is not allowed on {request.path}; allowed: "
            + (", ".join(allow.split(",")) or "none"),
            413: "the request body is larger than this server accepts",
        }.get(exc.status, exc.text or exc.reason)
        problem = Problem(exc.status, exc.reason, detail)
        if allow:
            problem.headers["Allow"] = allow
        return problem.response(request.path)
    except Exception:
        log.exception("api.unhandled_error", path=request.path, method=request.method)
        return Problem(500, "Internal Server Error", "an unexpected error occurred").response(
            request.path
        )


def shedding(
    limit: int,
    public_limit: int = 0,
    public: frozenset[str] = frozenset(),
    streams: Callable[[str], bool] = lambda _path: False,
) -> Middleware:
    """At most `limit` /api/ requests at once in this process (0: no limit).

    Past it a request gets 503 with Retry-After at once, before it costs a key lookup or an
    INSERT: under overload the intake answers fast and stores nothing it was not asked to,
    instead of queueing requests until every client times out. A retry is safe (idempotent
    on the order id).

    The `public` /api/ paths (no key: provider callbacks) count against `public_limit`
    instead, so anonymous clients that dribble their bodies cannot take the merchants' slots.
    Long-lived `streams` (checkout's SSE) count against neither: they have their own limits.
    """
    inflight = {"merchant": 0, "public": 0}
    limits = {"merchant": limit, "public": public_limit}

    @web.middleware
    async def shed(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/") or streams(request.path):
            return await handler(request)
        budget = "public" if request.path in public else "merchant"
        if limits[budget] and inflight[budget] >= limits[budget]:
            metrics.ERRORS.labels("overloaded").inc()
            raise Problem(
                503,
                "Service Unavailable",
                "the intake is at capacity: retry in a second",
                slug="overloaded",
                headers={"Retry-After": "1"},
            )
        inflight[budget] += 1
        try:
            return await handler(request)
        finally:
            inflight[budget] -= 1

    return shed
