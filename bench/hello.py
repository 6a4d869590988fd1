"""The intake's ceiling: aiohttp answering POST /api/payment while doing nothing else.

It reads the body, parses the JSON and answers a fixed 202 body: no key check, no validation,
no database. Run as many processes as the intake has, on the same event loop (uvloop), with
SO_REUSEPORT, and driven by the same load generator, it measures what aiohttp alone can serve
on this machine; the intake cannot beat it, whatever the engine does.

    python -m bench.hello --port PORT
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

from engine import loop as event_loop

ACK = json.dumps({"status": "PENDING", "code": "ACK_OK", "transactionId": "HELLO"}).encode()


async def payment(request: web.Request) -> web.Response:
    """Parse the request like the intake would, answer like the intake would, store nothing."""
    json.loads(await request.read())
    return web.Response(status=202, body=ACK, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """GET /health: up."""
    return web.Response(text="ok")


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.hello")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/api/payment", payment)
    app.router.add_get("/health", health)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=event_loop.new("uvloop"),
    )


if __name__ == "__main__":
    main()
