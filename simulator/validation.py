"""Request-body parsing shared by the simulator's handlers: JSON in, pydantic model out, or 400."""

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


def bad_request(message: str, field: str) -> web.HTTPBadRequest:
    """Build a 400 with the simulator's JSON error shape."""
    body = json.dumps({"error": message, "field": field})
    return web.HTTPBadRequest(text=body, content_type="application/json")


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """Parse the request's JSON object body into `model`, raising a JSON 400 on any problem."""
    try:
        data = await request.json()
    except ValueError:  # also covers UnicodeDecodeError
        raise bad_request("malformed JSON", "body") from None
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise bad_request(first["msg"], field) from None
