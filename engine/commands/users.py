"""Operators' CLI for back office users: `python -m engine.commands.users create ...`.

`create --email E --role admin|viewer|operator [--mid M] [--password-stdin]` makes a user: a
merchant's admin or viewer (with --mid), or one of our operators (without). With
--password-stdin the password is read from standard input; otherwise a random one is drawn
and printed once. `make run` also makes a demo merchant user and a demo operator
(`demo_logins`, called by `merchants demo`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from config import settings as config_settings
from engine import logs, passwords
from engine.accounts import users
from engine.store import db, devdb
from engine.store.accounts import AccountStore
from engine.store.repository import Repository

DEMO_MERCHANT_EMAIL = "admin@demo-merchant.example"
DEMO_OPERATOR_EMAIL = "operator@hamster.example"
LOGIN_PATH = "/backoffice/login"


async def _create(
    url: str, settings: config_settings.Settings, email: str, role: str, mid: str | None, pw: str
) -> dict[str, Any]:
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        user = await users.create(
            AccountStore(pool),
            Repository(pool),
            passwords.hasher(settings.backoffice_password_profile),
            email=email,
            role=role,
            mid=mid,
            password=pw,
        )
        return {"id": user.id, "email": user.email, "role": user.role, "mid": user.mid}
    finally:
        await pool.close()


def login_url(settings: config_settings.Settings) -> str:
    """Where the back office's login page is under `make run`."""
    return f"http://{settings.web_host}:{settings.web_port}{LOGIN_PATH}"


async def _ensure(
    pool: Any, settings: config_settings.Settings, email: str, role: str, mid: str | None, pw: str
) -> None:
    """The user exists with this password (made, or its password set again)."""
    ph = passwords.hasher(settings.backoffice_password_profile)
    store = AccountStore(pool)
    if await store.set_password(email, await passwords.hash_password(ph, pw)) is None:
        await users.create(
            store, Repository(pool), ph, email=email, role=role, mid=mid, password=pw
        )


def _saved_password(path: Path, *keys: str) -> str:
    """The password saved at `keys` in the JSON file, or a fresh one."""
    try:
        found: Any = json.loads(path.read_text())
        for key in keys:
            found = found[key]
    except (OSError, ValueError, KeyError, TypeError):
        found = None
    ok = isinstance(found, str) and passwords.problem(found) is None
    return found if ok else secrets.token_urlsafe(12)


def _write(path: Path, body: dict[str, Any]) -> None:
    path.write_text(json.dumps(body, indent=2))
    path.chmod(0o600)


def demo_logins(url: str, settings: config_settings.Settings, mid: str) -> None:
    """The demo merchant's admin and a demo operator, saved in the data folder and printed."""
    data = Path(settings.data_dir)
    merchant_file, operator_file = data / "demo-merchant.json", data / "demo-operator.json"
    merchant_pw = _saved_password(merchant_file, "dashboard", "password")
    operator_pw = _saved_password(operator_file, "password")

    async def ensure() -> None:
        pool = await db.create_pool(url, min_size=1, max_size=2)
        try:
            await _ensure(pool, settings, DEMO_MERCHANT_EMAIL, "admin", mid, merchant_pw)
            await _ensure(pool, settings, DEMO_OPERATOR_EMAIL, "operator", None, operator_pw)
        finally:
            await pool.close()

    asyncio.run(ensure())
    link = login_url(settings)
    merchant = json.loads(merchant_file.read_text())
    merchant["dashboard"] = {"url": link, "email": DEMO_MERCHANT_EMAIL, "password": merchant_pw}
    _write(merchant_file, merchant)
    _write(operator_file, {"url": link, "email": DEMO_OPERATOR_EMAIL, "password": operator_pw})
    print(f"back office: {link}")
    print(f"  merchant admin: {DEMO_MERCHANT_EMAIL} / {merchant_pw}")
    print(f"  operator:       {DEMO_OPERATOR_EMAIL} / {operator_pw}")


def main(argv: list[str]) -> int:
    """CLI for operators: create a back office user."""
    parser = argparse.ArgumentParser(prog="python -m engine.commands.users")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a user and print it as JSON")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=["admin", "viewer", "operator"])
    create.add_argument("--mid", default=None, help="the merchant of an admin or viewer")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else a random one is printed once)",
    )
    args = parser.parse_args(argv)
    settings = config_settings.load()
    logs.configure(settings.log_format, settings.log_level)
    drawn = not args.password_stdin
    pw = secrets.token_urlsafe(12) if drawn else sys.stdin.readline().rstrip("\r\n")
    try:
        created = asyncio.run(
            _create(devdb.database_url(settings), settings, args.email, args.role, args.mid, pw)
        )
    except users.UserRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    if drawn:
        created["password"] = pw  # shown this once; only its Argon2id hash is kept
    print(json.dumps(created))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
