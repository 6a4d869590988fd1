"""Fake merchant webhook receiver: records every delivery and can be scripted to fail."""

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from simulator.validation import read_model

Json = dict[str, Any]

log = structlog.get_logger("simulator.merchant")


class FaultScript(BaseModel):
    """Body of POST /api/webhook/admin/faults; omitted fail_next/delay_ms stay unchanged."""

    model_config = ConfigDict(strict=True, extra="forbid")

    fail_next: int | None = Field(default=None, ge=0)
    # Error statuses only: a scripted "failure" answering 2xx would look like success.
    status: int = Field(default=503, ge=400, le=599)
    delay_ms: int | None = Field(default=None, ge=0)


@dataclass
class MerchantState:
    """Per-app merchant state: scripted faults and every webhook received."""

    fail_next: int = 0
    fail_status: int = 503
    delay_ms: int = 0
    received: list[Json] = field(default_factory=list)

    def faults(self) -> Json:
        """Current fault script as JSON."""
        return {"fail_next": self.fail_next, "status": self.fail_status, "delay_ms": self.delay_ms}


MERCHANT_STATE = web.AppKey("merchant_state", MerchantState)


def _listing(webhooks: list[Json]) -> web.Response:
    return web.json_response({"count": len(webhooks), "webhooks": webhooks})


async def receive_webhook(request: web.Request) -> web.Response:
    """Record a webhook delivery and answer 200, or the scripted failure status."""
    state = request.app[MERCHANT_STATE]
    raw = (await request.read()).decode("utf-8", errors="replace")
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    # Consume a scripted failure and record before any await, so concurrent deliveries each
    # see a consistent fail_next and a waiting test sees the delivery as soon as it arrives.
    status = 200
    if state.fail_next > 0:
        state.fail_next -= 1
        status = state.fail_status
    state.received.append(
        {
            "receivedAt": datetime.now(UTC).isoformat(),
            "path": request.path,
            "headers": dict(request.headers),
            "body": body,
            "raw": raw,
            "status": status,
        }
    )
    fields = body if isinstance(body, dict) else {}
    log.info(
        "webhook.received",
        path=request.path,
        httpStatus=status,
        transactionId=fields.get("transactionId"),
        txStatus=fields.get("status"),
    )
    if state.delay_ms:
        await asyncio.sleep(state.delay_ms / 1000)
    if status != 200:
        return web.json_response({"received": False, "error": "scripted_fault"}, status=status)
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
    return web.json_response(state.faults())


async def get_faults(request: web.Request) -> web.Response:
    """Show the current fault script."""
    return web.json_response(request.app[MERCHANT_STATE].faults())


def setup_merchant(app: web.Application) -> None:
    """Attach merchant state and routes under /api/webhook to `app`."""
    app[MERCHANT_STATE] = MerchantState()
    app.router.add_post("/api/webhook/pg/{name}", receive_webhook)
    app.router.add_get("/api/webhook/pg/{name}", list_path)
    app.router.add_get("/api/webhook/received", list_all)
    app.router.add_delete("/api/webhook/received", clear_received)
    app.router.add_post("/api/webhook/admin/faults", set_faults)
    app.router.add_get("/api/webhook/admin/faults", get_faults)
