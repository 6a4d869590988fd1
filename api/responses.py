"""JSON answers: every handler answers a pydantic response model, written here and only here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

JSON = "application/json"


def send(
    body: BaseModel,
    status: int = 200,
    *,
    content_type: str = JSON,
    headers: Mapping[str, str] | None = None,
    exclude_unset: bool = False,
) -> web.Response:
    """`body` as compact JSON by its wire names (camelCase), non-ASCII kept as UTF-8.

    `exclude_unset` leaves out the members that were not given (a problem's optional ones).
    """
    return web.Response(
        status=status,
        body=body.model_dump_json(by_alias=True, exclude_unset=exclude_unset).encode(),
        content_type=content_type,
        charset="utf-8",
        headers=headers,
    )


def json_response(body: Any, status: int = 200) -> web.Response:
    """A plain JSON body, written like `send`'s: checkout's and the customer app's answers,
    until they get response models of their own (and with them a generated OpenAPI entry)."""
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        content_type=JSON,
    )


def iso(ts: datetime | None) -> str | None:
    """A timestamp as ISO 8601 with its offset, or None."""
    return ts.isoformat() if ts else None
