"""Operators' CLI for merchants' webhook endpoints: `python -m engine.commands.endpoints ...`.

Merchants manage their own endpoints through the API (`/api/webhook-endpoints`); this is for
operators. Every command names the merchant and the mode: an endpoint belongs to one of each.

add <url> --mid M --mode test|live [--description D]
        register an endpoint; prints {"id": ..., "secret": "whsec_..."} (the secret shown once)
roll <id> --mid M --mode test|live --grace-seconds N
        a new secret, printed alone; the old ones keep signing for N seconds
list --mid M --mode test|live
        the merchant's endpoints in that mode, as JSON (never their secrets)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from pydantic import AnyHttpUrl, ValidationError

from config import settings as config_settings
from engine import errors, logs
from engine.store import db, devdb
from engine.store.repository import Repository
from engine.webhooks import signing


def _url(value: str) -> str:
    try:
        AnyHttpUrl(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not an absolute http(s) URL: {value!r}") from None
    # Stored as given: a payment's webhookUrl must match it exactly.
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.commands.endpoints",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="register an endpoint and print its secret")
    add.add_argument("url", type=_url)
    add.add_argument("--description", default=None)
    roll = commands.add_parser("roll", help="new secret; the old ones expire after a grace time")
    roll.add_argument("id", type=int)
    roll.add_argument(
        "--grace-seconds",
        type=float,
        required=True,
        help="how long the old secrets stay valid (0: at once)",
    )
    listing = commands.add_parser("list", help="the merchant's endpoints in a mode")
    for command in (add, roll, listing):
        command.add_argument("--mid", required=True, help="the merchant it belongs to")
        command.add_argument("--mode", required=True, choices=["test", "live"])
    return parser


async def _run(args: argparse.Namespace, settings: config_settings.Settings) -> int:
    dsn = await asyncio.to_thread(devdb.database_url, settings)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    out: Any
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        repo = Repository(pool)
        if await repo.merchants.merchant(args.mid) is None:
            print(f"no merchant {args.mid!r}", file=sys.stderr)
            return 1
        if args.command == "list":
            out = [
                {
                    "id": e.id,
                    "url": e.url,
                    "description": e.description,
                    "mode": e.mode,
                    "activeSecrets": e.active_secrets,
                }
                for e in await repo.endpoints.endpoints(args.mid, args.mode)
            ]
        elif args.command == "add":
            secret = signing.new_secret()
            try:
                endpoint = await repo.endpoints.add_endpoint(
                    args.mid,
                    args.mode,
                    args.url,
                    secret,
                    description=args.description,
                    max_endpoints=settings.max_webhook_endpoints,
                )
            except errors.EndpointExists as exc:
                print(exc.detail, file=sys.stderr)
                return 1
            if endpoint is None:
                print(
                    f"{args.mid} has {settings.max_webhook_endpoints} endpoints already",
                    file=sys.stderr,
                )
                return 1
            out = {"id": endpoint.id, "url": endpoint.url, "mode": endpoint.mode, "secret": secret}
        else:
            secret = signing.new_secret()
            if not await repo.endpoints.roll_endpoint(
                args.mid, args.mode, args.id, secret, args.grace_seconds
            ):
                print(f"no active endpoint {args.id} of {args.mid} ({args.mode})", file=sys.stderr)
                return 1
            # The secret alone on stdout, so a script can capture it.
            print(secret)
            return 0
    finally:
        await pool.close()
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the command, return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "roll" and args.grace_seconds < 0:
        print("--grace-seconds must not be negative", file=sys.stderr)
        return 2
    settings = config_settings.load()
    logs.configure(settings.log_format, settings.log_level)
    return asyncio.run(_run(args, settings))


if __name__ == "__main__":
    raise SystemExit(main())
