"""The web process serves the SDK to any origin with a long cache, and the app's files."""

from __future__ import annotations

from aiohttp.test_utils import TestClient


async def test_the_sdk_is_served_to_any_origin_for_a_year(client: TestClient) -> None:
    resp = await client.get("/sdk/v1/hamster.js", headers={"Origin": "http://shop.example"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "export function Hamster" in await resp.text()
    types = await client.get("/sdk/v1/hamster.d.ts")
    assert types.status == 200
    assert "declare function Hamster" in await types.text()


async def test_only_the_sdk_files_are_served_under_sdk(client: TestClient) -> None:
    for path in ("/sdk/v1/other.js", "/sdk/v1/..%2F..%2Fapp%2Fapp.js", "/sdk/v2/hamster.js"):
        assert (await client.get(path)).status == 404, path


async def test_the_app_files_and_manifest(client: TestClient) -> None:
    manifest = await client.get("/app/manifest.webmanifest")
    assert manifest.status == 200
    assert manifest.headers["Content-Type"].startswith("application/manifest+json")
    assert (await manifest.json(content_type=None))["start_url"] == "/app/"
    for name, kind in (
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("icon-192.png", "image/png"),
    ):
        resp = await client.get(f"/app/static/{name}")
        assert resp.status == 200, name
        assert resp.headers["Content-Type"].startswith(kind)
    for bad in (
        "/app/static/.hidden.js",
        "/app/static/..%2Fsdk%2Fv1%2Fhamster.js",
        "/app/static/nope.css",
    ):
        assert (await client.get(bad)).status == 404, bad
