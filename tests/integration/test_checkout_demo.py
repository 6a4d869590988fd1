"""`make run`'s checkout demo: a publishable key and a customer who can sign in, kept across
starts while they work."""

from __future__ import annotations

import json
from pathlib import Path

from config.settings import Settings
from engine.commands import checkout_demo
from engine.customers import accounts
from engine.merchants.keys import parse
from engine.store.repository import Repository
from tests.conftest import MID


async def test_demo_keys_and_customer(
    settings: Settings, repo: Repository, database_url: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"data_dir": tmp_path})
    await repo.merchants.create_merchant(MID, "Demo merchant")
    demo: dict[str, object] = {"mid": MID}
    await checkout_demo.ensure(database_url, settings, demo)
    key = demo["publishableKey"]
    assert isinstance(key, str) and parse(key) == ("publishable", "test")
    login = json.loads((tmp_path / "demo-customer.json").read_text())
    signed = await accounts.sign_in(repo.customers, login["email"], login["password"])
    assert signed is not None
    assert [c.last4 for c in await repo.customers.cards(signed.customer.id)] == ["4242"]
    again: dict[str, object] = {"mid": MID, "publishableKey": key}
    await checkout_demo.ensure(database_url, settings, again)
    assert again["publishableKey"] == key  # kept while it works
    assert json.loads((tmp_path / "demo-customer.json").read_text()) == login
