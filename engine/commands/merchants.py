"""Operators' CLI for merchants and their API keys: `python -m engine.commands.merchants ...`.

`create --mid M --name N [--mode test]` creates a merchant and its first key; `demo` does it
once for `make run` and prints the key every time (a fresh one if the saved key was revoked or
expired). What a key is and how it is stored: engine/merchants/keys.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from config import settings as config_settings
from engine import logs
from engine.commands import checkout_demo
from engine.merchants.keys import Kind, Mode, key_hash, parse_key
from engine.store import db, devdb
from engine.store.repository import Repository
from engine.webhooks import signing


async def _create(
    url: str,
    settings: config_settings.Settings,
    mid: str,
    name: str,
    mode: Mode,
    *,
    existing_ok: bool = False,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """The merchant, its first key and, if asked, its first webhook endpoint (of that mode).

    No merchant is ever handed a shared secret: an endpoint's secret is drawn for it alone.
    Without an endpoint, webhooks go to the operator's default receiver, signed with the
    operator's secret, which is not the merchant's to know.
    """
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        repo = Repository(pool)
        merchant = await repo.merchants.create_merchant(mid, name)
        if merchant is None and not existing_ok:
            raise SystemExit(f"merchant {mid!r} exists already")
        issued = await repo.merchants.issue_key(mid, mode, settings.api_key_secret)
        created: dict[str, Any] = {
            "mid": mid,
            "name": name,
            "mode": mode,
            "apiKey": issued.key,
            "prefix": issued.prefix,
        }
        if webhook_url is not None:
            secret = signing.new_secret()
            endpoint = await repo.endpoints.add_endpoint(mid, mode, webhook_url, secret)
            assert endpoint is not None  # a new merchant has no endpoints to count
            created["webhookEndpoint"] = {"id": endpoint.id, "url": webhook_url, "secret": secret}
        return created
    finally:
        await pool.close()


async def _issue(
    url: str, settings: config_settings.Settings, mid: str, mode: Mode, kind: Kind = "secret"
) -> dict[str, Any]:
    """Another key for an existing merchant: how a live key comes to a merchant made in test."""
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        repo = Repository(pool)
        if await repo.merchants.merchant(mid) is None:
            raise SystemExit(f"no merchant {mid!r}")
        issued = await repo.merchants.issue_key(
            mid, mode, settings.api_key_secret, max_keys=settings.max_api_keys, kind=kind
        )
        return {
            "mid": mid,
            "mode": mode,
            "kind": kind,
            "apiKey": issued.key,
            "prefix": issued.prefix,
        }
    finally:
        await pool.close()


DEMO_MID = "hamster_dummy_mid_001"


async def _demo_key_state(url: str, settings: config_settings.Settings, demo: Any) -> str:
    """Whether the saved demo key still works: "active", "revoked", "expired" or "unknown"."""

    key = demo.get("apiKey") if isinstance(demo, dict) else None
    if not isinstance(key, str) or parse_key(key) != "test":
        return "unknown"
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        found = await Repository(pool).merchants.authenticate(
            key_hash(settings.api_key_secret, key)
        )
    finally:
        await pool.close()
    if found is None or found.mid != DEMO_MID:
        return "unknown"  # another database, or another ENGINE_API_KEY_SECRET
    if found.active:
        return "active"
    return "revoked" if found.revoked_at is not None else "expired"


def _demo(url: str, settings: config_settings.Settings) -> int:
    """The demo merchant of `make run`: its saved key while it works, else a fresh one saved."""
    # The demo key is kept in the data folder so `make run` can show it on every start.
    saved = Path(settings.data_dir) / "demo-merchant.json"
    state = "missing"
    if saved.exists():
        try:
            demo = json.loads(saved.read_text())
        except ValueError:
            demo = None
        # A reader of the README may have revoked or rolled it: a dead key is no demo.
        state = asyncio.run(_demo_key_state(url, settings, demo))
    if state != "active":
        demo = asyncio.run(
            _create(url, settings, DEMO_MID, "Demo merchant", "test", existing_ok=True)
        )
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(demo, indent=2))
        saved.chmod(0o600)
    print(f"demo merchant {demo['mid']}: API key {demo['apiKey']}")
    asyncio.run(checkout_demo.ensure(url, settings, demo))
    saved.write_text(json.dumps(demo, indent=2))  # with its publishable key
    if state not in ("active", "missing"):
        print(f"  (a new key: the one saved in {saved} was {state})")
    print(
        f"  webhooks go to the operator's receiver {settings.default_webhook_url} until the "
        "merchant registers its own endpoint (POST /api/webhook-endpoints)"
    )
    print(f"  try: curl -H 'Authorization: Bearer {demo['apiKey']}' ...  (README)")
    return 0


def main(argv: list[str]) -> int:
    """CLI for operators: create a merchant (and its first key), or the demo merchant."""
    parser = argparse.ArgumentParser(prog="python -m engine.commands.merchants")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a merchant and print its first key as JSON")
    create.add_argument("--mid", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--mode", choices=["live", "test"], default="live")
    create.add_argument(
        "--webhook-url",
        default=None,
        help="register the merchant's first webhook endpoint (its own secret)",
    )
    key = sub.add_parser("key", help="issue another key (e.g. the other mode's) as JSON")
    key.add_argument("--mid", required=True)
    key.add_argument("--mode", choices=["live", "test"], required=True)
    key.add_argument("--kind", choices=["secret", "publishable"], default="secret")
    sub.add_parser("demo", help="the demo merchant of `make run` (made once, shown every time)")
    args = parser.parse_args(argv)
    settings = config_settings.load()
    # Logs go to stderr: stdout is the JSON a script reads (`create`), and nothing else.
    logs.configure(settings.log_format, settings.log_level)
    url = devdb.database_url(settings)
    if args.command == "create":
        print(
            json.dumps(
                asyncio.run(
                    _create(
                        url, settings, args.mid, args.name, args.mode, webhook_url=args.webhook_url
                    )
                )
            )
        )
        return 0
    if args.command == "key":
        print(json.dumps(asyncio.run(_issue(url, settings, args.mid, args.mode, args.kind))))
        return 0
    return _demo(url, settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
