"""`make run`'s checkout demo: the demo merchant's publishable key and a demo customer.

The customer's card is the simulator's fixed test token for 4242 4242 4242 4242 (approves),
so it exists before the simulator starts; the login is saved in the data folder as
demo-customer.json (`email`, `password`) and printed on every start.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from config import settings as config_settings
from engine import passwords
from engine.customers import accounts
from engine.merchants.keys import key_hash, parse
from engine.store import db
from engine.store.repository import Repository

DEMO_EMAIL = "demo@hamster.test"
# The simulator's fixed token of its approving test card (simulator/cards.py TEST_TOKENS).
DEMO_CARD = ("card_test4242", "visa", "4242")


async def _publishable(repo: Repository, settings: config_settings.Settings, demo: Any) -> str:
    """The saved publishable key while it works, else a new one."""
    key = demo.get("publishableKey")
    if isinstance(key, str) and parse(key) == ("publishable", "test"):
        found = await repo.merchants.authenticate(key_hash(settings.api_key_secret, key))
        if found is not None and found.active and found.mid == demo["mid"]:
            return key
    issued = await repo.merchants.issue_key(
        demo["mid"], "test", settings.api_key_secret, kind="publishable"
    )
    return issued.key


async def _customer(repo: Repository, saved: Path) -> dict[str, str]:
    """The demo customer: its saved login while it works, else a new password; one card."""
    login: Any = None
    if saved.exists():
        try:
            login = json.loads(saved.read_text())
        except ValueError:
            login = None
    password = login.get("password") if isinstance(login, dict) else None
    found = await repo.customers.by_email(DEMO_EMAIL)
    if found is None:
        password = secrets.token_urlsafe(12)
        customer = await accounts.sign_up(repo.customers, DEMO_EMAIL, password, "Demo customer")
        assert customer is not None
    else:
        customer, hashed = found
        checker = accounts.PASSWORDS
        if not isinstance(password, str) or not await checker.verify(hashed, password):
            password = secrets.token_urlsafe(12)
            hashed = await passwords.hash_password(checker.ph, password)
            await repo.customers.set_password(customer.id, hashed)
    if not await repo.customers.cards(customer.id):
        await repo.customers.add_card(customer.id, *DEMO_CARD)
    kept = {"email": DEMO_EMAIL, "password": str(password)}
    saved.write_text(json.dumps(kept, indent=2))
    saved.chmod(0o600)
    return kept


async def ensure(url: str, settings: config_settings.Settings, demo: dict[str, Any]) -> None:
    """Add the publishable key to `demo` (the merchant's saved JSON) and make the customer."""
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        repo = Repository(pool)
        demo["publishableKey"] = await _publishable(repo, settings, demo)
        login = await _customer(repo, Path(settings.data_dir) / "demo-customer.json")
    finally:
        await pool.close()
    print(f"  publishable key {demo['publishableKey']} (the shop's SDK uses it)")
    print(f"demo customer (the phone app, /app/): {login['email']} / {login['password']}")
