"""Fake merchant webhook receiver: verifies signatures, records every delivery, fails on cue."""

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from simulator.settings import SimulatorSettings
from simulator.signatures import WebhookSecret, rejection
from simulator.validation import read_model

Json = dict[str, Any]

log = structlog.get_logger("simulator.merchant")


class FaultScript(BaseModel):
    """Body of POST /api/webhook/admin/faults; omitted fail_next/delay_ms/down_for_ms stay.

    fail_next counts verified deliveries only: one refused for its signature, or answered 503
    while down, does not use it up.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    fail_next: int | None = Field(default=None, ge=0)
    # Error statuses only: a scripted "failure" answering 2xx would look like success.
    status: int = Field(default=503, ge=400, le=599)
    delay_ms: int | None = Field(default=None, ge=0)
    # Answer every webhook 503 for this long from now (0 ends an outage).
    down_for_ms: int | None = Field(default=None, ge=0)


class SecretList(BaseModel):
    """Body of POST /api/webhook/admin/secrets: the secrets the receiver accepts from now on."""

    model_config = ConfigDict(strict=True, extra="forbid")

    secrets: list[WebhookSecret] = Field(min_length=1)


@dataclass
class MerchantState:
    """Per-app merchant state: accepted secrets, scripted faults and every webhook received."""

    secrets: list[str]
    tolerance_seconds: float = 300
    fail_next: int = 0
    fail_status: int = 503
    delay_ms: int = 0
    # time.monotonic() until which every webhook is answered 503.
    down_until: float = 0.0
    received: list[Json] = field(default_factory=list)

    def down_for_ms(self) -> int:
        """Milliseconds the receiver stays down (0 when up)."""
        return max(0, math.ceil((self.down_until - time.monotonic()) * 1000))

    def faults(self) -> Json:
        """Current fault script as JSON."""
        return {
            "fail_next": self.fail_next,
            "status": self.fail_status,
            "delay_ms": self.delay_ms,
            "down_for_ms": self.down_for_ms(),
        }


MERCHANT_STATE = web.AppKey("merchant_state", MerchantState)


def _listing(webhooks: list[Json]) -> web.Response:
    return web.json_response({"count": len(webhooks), "webhooks": webhooks})


async def receive_webhook(request: web.Request) -> web.Response:
    """Verify and record a webhook; answer 200, 401 (bad signature), 503 (down) or the fault."""
    state = request.app[MERCHANT_STATE]
    data = await request.read()
    raw = data.decode("utf-8", errors="replace")
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    # The signature covers the bytes as received, before any parsing.
    reason = rejection(
        request.headers,
        data,
        state.secrets,
        now=time.time(),
        tolerance_seconds=state.tolerance_seconds,
    )
    # Decide, consume a scripted failure and record before any await, so concurrent
    # deliveries each see a consistent fail_next and a waiting test sees them at once.
    status, error = 200, None
    if state.down_for_ms():
        status, error = 503, "down"
    elif reason is not None:
        status, error = 401, reason
    elif state.fail_next > 0:
        state.fail_next -= 1
        status, error = state.fail_status, "scripted_fault"
    state.received.append(
        {
            "receivedAt": datetime.now(UTC).isoformat(),
            "path": request.path,
            "headers": dict(request.headers),
            "body": body,
            "raw": raw,
            "status": status,
            "verified": reason is None,
            "rejectReason": reason,
        }
    )
    fields = body if isinstance(body, dict) else {}
    log.info(
        "webhook.received",
        path=request.path,
        httpStatus=status,
        verified=reason is None,
        rejectReason=reason,
        transactionId=fields.get("transactionId"),
        txStatus=fields.get("status"),
    )
    if state.delay_ms:
        await asyncio.sleep(state.delay_ms / 1000)
    if error is not None:
        return web.json_response({"received": False, "error": error}, status=status)
    return web.json_response({"received": True})


async def list_path(request: web.Request) -> web.Response:
    """List webhooks received on this exact path."""
    received = request.app[MERCHANT_STATE].received
    return _listing([w for w in received if w["path"] == request.path])


async def list_all(request: web.Request) -> web.Response:
    """List webhooks received on every path."""
    return _listing(request.app[MERCHANT_STATE].received)


async def clear_received(request: web.Request) -> web.Response:
    """Forget every received webhook (the fault script is kept)."""
    request.app[MERCHANT_STATE].received.clear()
    return web.json_response({"cleared": True})


async def set_faults(request: web.Request) -> web.Response:
    """Script the next N deliveries to fail and/or add answer latency; returns the script."""
    state = request.app[MERCHANT_STATE]
    script = await read_model(request, FaultScript)
    if script.fail_next is not None:
        state.fail_next = script.fail_next
    state.fail_status = script.status
    if script.delay_ms is not None:
        state.delay_ms = script.delay_ms
    if script.down_for_ms is not None:
        state.down_until = time.monotonic() + script.down_for_ms / 1000
    return web.json_response(state.faults())


async def get_faults(request: web.Request) -> web.Response:
    """Show the current fault script."""
    return web.json_response(request.app[MERCHANT_STATE].faults())


async def set_secrets(request: web.Request) -> web.Response:
    """Replace the secrets webhooks may be signed with (one is enough to accept)."""
    state = request.app[MERCHANT_STATE]
    state.secrets = list((await read_model(request, SecretList)).secrets)
    return web.json_response({"count": len(state.secrets)})


def setup_merchant(app: web.Application, settings: SimulatorSettings) -> None:
    """Attach merchant state and routes under /api/webhook to `app`."""
    app[MERCHANT_STATE] = MerchantState(
        secrets=[settings.webhook_secret], tolerance_seconds=settings.webhook_tolerance_seconds
    )
    app.router.add_post("/api/webhook/pg/{name}", receive_webhook)
    app.router.add_get("/api/webhook/pg/{name}", list_path)
    app.router.add_get("/api/webhook/received", list_all)
    app.router.add_delete("/api/webhook/received", clear_received)
    app.router.add_post("/api/webhook/admin/faults", set_faults)
    app.router.add_get("/api/webhook/admin/faults", get_faults)
    app.router.add_post("/api/webhook/admin/secrets", set_secrets)
