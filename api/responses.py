"""JSON answers: every handler answers a pydantic response model, written here and only here."""

from __future__ import annotations

from collections.abc import Mapping

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
