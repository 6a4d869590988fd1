"""Back office users: what the operators' command refuses, and the demo logins of make run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from argon2 import PasswordHasher

from config.settings import Settings
from engine import passwords
from engine.accounts import users
from engine.commands import users as users_command
from engine.store.accounts import AccountStore
from engine.store.repository import Repository
from tests.backoffice.support import PASSWORD, make_user
from tests.integration.engine_support import tuned


@pytest.mark.parametrize(
    ("email", "role", "mid", "password", "field"),
    [
        ("not-an-email", "admin", "shop_a", PASSWORD, "email"),
        ("a@b.example", "owner", "shop_a", PASSWORD, "role"),
        ("a@b.example", "operator", "shop_a", PASSWORD, "mid"),
        ("a@b.example", "viewer", None, PASSWORD, "mid"),
        ("a@b.example", "admin", "shop_a", "short", "password"),
        ("a@b.example", "admin", "shop_a", "x" * 2000, "password"),
        ("a@b.example", "admin", "shop_a", "tab\there and more", "password"),
        ("a@b.example", "admin", "nobody", PASSWORD, "mid"),
    ],
)
async def test_bad_users_are_refused_naming_the_field(
    pool: asyncpg.Pool, email: str, role: str, mid: str | None, password: str, field: str
) -> None:
    await make_user(pool, "first@b.example", "admin", "shop_a")
    with pytest.raises(users.UserRefused, match=f"^{field}:"):
        await users.create(
            AccountStore(pool),
            Repository(pool),
            passwords.hasher("fast"),
            email=email,
            role=role,
            mid=mid,
            password=password,
        )


async def test_an_email_is_one_account_however_typed(pool: asyncpg.Pool) -> None:
    await make_user(pool, "Same@Shop.example", "admin", "shop_a")
    with pytest.raises(users.UserRefused, match=r"^email: a user 'same@shop\.example' exists"):
        await make_user(pool, " same@shop.EXAMPLE ", "viewer", "shop_a")


def test_make_run_demo_logins_are_saved_and_kept(
    database_url: str, settings: Settings, tmp_path: Path
) -> None:
    local = tuned(settings, data_dir=tmp_path, backoffice_password_profile="fast")

    async def merchant() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute("INSERT INTO merchants (mid, name) VALUES ('demo_mid', 'Demo')")
        await conn.close()

    asyncio.run(merchant())
    (tmp_path / "demo-merchant.json").write_text(json.dumps({"mid": "demo_mid", "apiKey": "k"}))
    users_command.demo_logins(database_url, local, "demo_mid")
    first = json.loads((tmp_path / "demo-merchant.json").read_text())
    operator = json.loads((tmp_path / "demo-operator.json").read_text())
    assert first["apiKey"] == "k"  # what was there stays
    assert first["dashboard"]["url"].endswith("/backoffice/login")
    assert set(operator) == {"url", "email", "password"}
    users_command.demo_logins(database_url, local, "demo_mid")  # the next make run
    assert json.loads((tmp_path / "demo-merchant.json").read_text()) == first
    assert json.loads((tmp_path / "demo-operator.json").read_text()) == operator

    async def hashes() -> dict[str, str]:
        conn = await asyncpg.connect(database_url)
        rows = await conn.fetch("SELECT email, password_hash FROM backoffice_users")
        await conn.close()
        return {r["email"]: r["password_hash"] for r in rows}

    stored = asyncio.run(hashes())
    ph = PasswordHasher()
    assert ph.verify(stored[first["dashboard"]["email"]], first["dashboard"]["password"])
    assert ph.verify(stored[operator["email"]], operator["password"])
