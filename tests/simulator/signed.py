"""Signed headers for posting to the receiver, made by the third-party `standardwebhooks`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from simulator.signatures import DEV_WEBHOOK_SECRET


def encode(body: Any) -> bytes:
    """A JSON body as the bytes that will be sent (and signed)."""
    return json.dumps(body, separators=(",", ":")).encode()


def headers(
    data: bytes,
    secret: str = DEV_WEBHOOK_SECRET,
    *,
    msg_id: str = "evt_test",
    at: datetime | None = None,
) -> dict[str, str]:
    """webhook-id/-timestamp/-signature for `data`, signed with `secret` at `at` (now)."""
    at = at or datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, data.decode()),
    }
