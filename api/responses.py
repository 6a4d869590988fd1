"""JSON answers: one way to write them (the older handlers still carry copies; issue 11)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web


def json_response(body: Any, status: int = 200) -> web.Response:
    """`body` as compact JSON, non-ASCII kept as UTF-8 (as the seed's bodies are)."""
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        content_type="application/json",
    )


def iso(ts: datetime | None) -> str | None:
    """A timestamp as ISO 8601 with its offset, or None."""
    return ts.isoformat() if ts else None
