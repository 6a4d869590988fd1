"""Operators' CLI for webhook signing secrets: `python -m engine.endpoints add|roll <url>`.

add <url> [--mid M]             register an endpoint; prints its new whsec_ secret
roll <url> --grace-seconds N    print a new secret; the url's current ones expire in N seconds
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import AnyHttpUrl, ValidationError

from config import settings as config_settings
from engine import db, devdb, logs, signing
from engine.repository import Repository


def _url(value: str) -> str:
    try:
        AnyHttpUrl(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not an absolute http(s) URL: {value!r}") from None
    # Stored as given: deliveries match it exactly against a payment's webhookUrl.
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine.endpoints",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="register an endpoint and print its secret")
    add.add_argument("url", type=_url)
    add.add_argument("--mid", default=None, help="the merchant it belongs to")
    roll = commands.add_parser("roll", help="new secret; the old ones expire after a grace time")
    roll.add_argument("url", type=_url)
    roll.add_argument("--grace-seconds", type=float, required=True,
                      help="how long the old secrets stay valid (0: at once)")  # fmt: skip
    return parser


async def _run(args: argparse.Namespace, settings: config_settings.Settings) -> int:
    dsn = await asyncio.to_thread(devdb.database_url, settings)
    pool = await db.create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        repo = Repository(pool)
        secret = signing.new_secret()
        if args.command == "add":
            await repo.add_endpoint(args.url, secret, args.mid)
        elif await repo.roll_endpoint(args.url, secret, args.grace_seconds) is None:
            print(f"no active secret for {args.url}; register one with `add`", file=sys.stderr)
            return 1
    finally:
        await pool.close()
    # The secret alone on stdout, so a script can capture it; hand it to the merchant.
    print(secret)
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
