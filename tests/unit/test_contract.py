"""The HTTP contract has one source: the document follows the router, bodies keep their bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiohttp import web

from api import problems, responses, routes, state
from api.merchant import keys
from api.ops import openapi
from api.schemas.keys import ApiKeyInfo
from config.settings import Settings
from engine.models import ApiKeyInfo as KeyRow

AT = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


async def _undocumented(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_an_entry_cannot_be_documented() -> None:
    app = web.Application()
    app[state.SETTINGS] = Settings()
    routes.mount(app)
    app.router.add_get("/api/extra", _undocumented)
    with pytest.raises(LookupError, match="GET /api/extra"):
        openapi.document(Settings(), app.router)


def test_the_document_has_the_routes_registered_and_no_others() -> None:
    app = web.Application()
    app.add_routes(keys.ROUTES)
    doc = openapi.document(Settings(), app.router)
    assert {(path, method) for path, item in doc["paths"].items() for method in item} == {
        ("/api/keys", "get"),
        ("/api/keys", "post"),
        ("/api/keys/{id}/roll", "post"),
        ("/api/keys/{id}", "delete"),
    }
    # Only the models those routes read and answer with, and the problem body.
    schemas = set(doc["components"]["schemas"])
    assert {"ApiKeyList", "IssuedKey", "RolledKey", "RollRequest", "Problem"} <= schemas
    assert "PaymentAck" not in schemas


async def test_a_body_is_compact_camel_case_with_python_offsets() -> None:
    row = KeyRow(1, "test", "sk_test_abcdef", AT, None, None, None)
    resp = responses.send(ApiKeyInfo.of(row), 201)
    assert (resp.status, resp.content_type, resp.charset) == (201, "application/json", "utf-8")
    assert resp.body == (
        b'{"id":1,"mode":"test","kind":"secret","prefix":"sk_test_abcdef",'
        b'"createdAt":"2026-01-02T03:04:05.000006+00:00",'
        b'"lastUsedAt":null,"expiresAt":null,"revokedAt":null}'
    )


def test_a_problem_keeps_non_ascii_and_leaves_out_what_does_not_apply() -> None:
    resp = problems.Problem(404, "Not Found", "no order «ü»", slug="x").response("/p")
    assert resp.content_type == problems.CONTENT_TYPE
    assert isinstance(resp.body, bytes) and "«ü»".encode() in resp.body
    assert json.loads(resp.body) == {
        "type": "/problems/x",
        "title": "Not Found",
        "status": 404,
        "detail": "no order «ü»",
        "instance": "/p",
    }
