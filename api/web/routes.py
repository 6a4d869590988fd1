"""Serve the checkout SDK (any origin may load it) and the customer app's static files.

The SDK's URL carries its major version (/sdk/v1/), so it may be cached for a year; merchants
pin the exact file with the SRI hash the README shows, and a change of the file is a release
that changes that hash. A module script from another origin is fetched in CORS mode (and SRI
needs CORS too), hence Access-Control-Allow-Origin: * on the SDK.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
SDK = STATIC / "sdk" / "v1"
APP = STATIC / "app"

YEAR = "public, max-age=31536000, immutable"
DAY = "public, max-age=86400"
TYPES = {
    ".js": "text/javascript",
    ".ts": "application/typescript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


def _file(path: Path, cache: str, cors: bool = False) -> web.FileResponse:
    headers = {
        "Cache-Control": cache,
        "Content-Type": f"{TYPES[path.suffix]}; charset=utf-8"
        if path.suffix in {".js", ".ts", ".css", ".webmanifest", ".svg"}
        else TYPES[path.suffix],
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin" if cors else "same-origin",
    }
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    return web.FileResponse(path, headers=headers)


async def sdk(request: web.Request) -> web.StreamResponse:
    """hamster.js or hamster.d.ts, cached for a year, loadable from any origin."""
    name = request.match_info["name"]
    if name not in {"hamster.js", "hamster.d.ts"}:
        raise web.HTTPNotFound()
    return _file(SDK / name, YEAR, cors=True)


async def app_file(request: web.Request) -> web.StreamResponse:
    """One file of the customer app (CSS, JS, icons): a flat folder, names checked."""
    name = request.match_info["name"]
    path = APP / name
    if "/" in name or name.startswith(".") or path.suffix not in TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return _file(path, DAY)


async def manifest(_request: web.Request) -> web.StreamResponse:
    """The web app manifest that makes the customer app installable."""
    return _file(APP / "manifest.webmanifest", DAY)


def add_routes(app: web.Application) -> None:
    """The SDK under /sdk/v1/ and the app's files under /app/static/."""
    app.router.add_get("/sdk/v1/{name}", sdk)
    app.router.add_get("/app/static/{name}", app_file)
    app.router.add_get("/app/manifest.webmanifest", manifest)
