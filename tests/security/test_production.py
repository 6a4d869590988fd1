"""ENGINE_ENV=production: no process starts while a setting is a public default or unsafe."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config import settings as config_settings
from config.settings import DEV_API_KEY_SECRET, DEV_WEBHOOK_SECRET, Settings

REPO = Path(__file__).resolve().parents[2]


def _proper() -> dict[str, str]:
    """A production environment with every setting as it should be."""
    whsec = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "ENGINE_ENV": "production",
        # Never reached: the guard refuses (or, if it wrongly passes, the connect fails).
        "DATABASE_URL": "postgresql://engine@127.0.0.1:1/engine",
        "ENGINE_WEBHOOK_SECRET": whsec,
        "ENGINE_API_KEY_SECRET": secrets.token_hex(32),
        "ENGINE_ATOM_MERCH_ID": "317157",
        "ENGINE_ATOM_PASSWORD": secrets.token_hex(8),
        "ENGINE_ATOM_REQ_HASH_KEY": secrets.token_hex(16),
        "ENGINE_ATOM_RES_HASH_KEY": secrets.token_hex(16),
        "ENGINE_ATOM_REQ_ENC_KEY": secrets.token_hex(16).upper(),
        "ENGINE_ATOM_RES_ENC_KEY": secrets.token_hex(16).upper(),
        "ENGINE_ACQUIRER_URL": "https://acquirer.example.com/v1",
        "ENGINE_ATOM_URL": "https://payment.atomtech.example/ots",
        "ENGINE_DEFAULT_WEBHOOK_URL": "https://merchant.example.com/webhooks/pg",
        "ENGINE_METRICS_TOKEN": secrets.token_hex(16),
        # Where Atom sends customers back and its callbacks.
        "ENGINE_PUBLIC_URL": "https://pay.example.com",
        # Test mode's own providers: a sandbox apart from live money.
        "ENGINE_TEST_ACQUIRER_URL": "https://sandbox.acquirer.example.com/v1",
        "ENGINE_TEST_ATOM_URL": "https://caller.atomtech.example/ots",
        "ENGINE_TEST_ATOM_MERCH_ID": "317159",
        "ENGINE_TEST_ATOM_PASSWORD": secrets.token_hex(8),
        "ENGINE_TEST_ATOM_REQ_HASH_KEY": secrets.token_hex(16),
        "ENGINE_TEST_ATOM_RES_HASH_KEY": secrets.token_hex(16),
        "ENGINE_TEST_ATOM_REQ_ENC_KEY": secrets.token_hex(16).upper(),
        "ENGINE_TEST_ATOM_RES_ENC_KEY": secrets.token_hex(16).upper(),
    }


ATOM_DEFAULTS = {
    f"ENGINE_{name.upper()}": str(Settings.model_fields[name].default)
    for name in (
        "atom_merch_id",
        "atom_password",
        "atom_req_hash_key",
        "atom_res_hash_key",
        "atom_req_enc_key",
        "atom_res_enc_key",
    )
}

# (the setting the message must name, the environment change that makes it unsafe)
UNSAFE: list[tuple[str, dict[str, str | None]]] = [
    ("ENGINE_WEBHOOK_SECRET", {"ENGINE_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET}),
    ("ENGINE_WEBHOOK_SECRET", {"ENGINE_WEBHOOK_SECRET": None}),
    ("ENGINE_API_KEY_SECRET", {"ENGINE_API_KEY_SECRET": DEV_API_KEY_SECRET}),
    ("ENGINE_API_KEY_SECRET", {"ENGINE_API_KEY_SECRET": None}),
    *((name, {name: default}) for name, default in ATOM_DEFAULTS.items()),
    ("DATABASE_URL", {"DATABASE_URL": None}),
    ("ENGINE_ACQUIRER_URL", {"ENGINE_ACQUIRER_URL": "http://127.0.0.1:8082/acquirer"}),
    ("ENGINE_ATOM_URL", {"ENGINE_ATOM_URL": None}),
    ("ENGINE_METRICS_TOKEN", {"ENGINE_METRICS_TOKEN": None}),
    ("ENGINE_PUBLIC_URL", {"ENGINE_PUBLIC_URL": None}),
    ("ENGINE_PUBLIC_URL", {"ENGINE_PUBLIC_URL": "http://pay.example.com"}),
    # Test keys must never reach live money: test mode's providers are set, and apart.
    ("ENGINE_TEST_ACQUIRER_URL", {"ENGINE_TEST_ACQUIRER_URL": None}),
    ("ENGINE_TEST_ACQUIRER_URL", {"ENGINE_TEST_ACQUIRER_URL": "https://acquirer.example.com/v1"}),
    ("ENGINE_TEST_ATOM_MERCH_ID", {"ENGINE_TEST_ATOM_MERCH_ID": "317157"}),
    ("ENGINE_TEST_ATOM_PASSWORD", {"ENGINE_TEST_ATOM_PASSWORD": None}),
]
if "webhook_allowed_hosts" in Settings.model_fields:  # the field of the egress policy
    UNSAFE.append(
        (
            "ENGINE_WEBHOOK_ALLOWED_HOSTS",
            {"ENGINE_WEBHOOK_ALLOWED_HOSTS": "hooks.example.com:443,127.0.0.1:8082"},
        )
    )


def _start(
    module: str, changes: dict[str, str | None], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ENGINE_") and k != "DATABASE_URL"
    }
    env |= _proper()
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["api", "engine.worker"])
@pytest.mark.parametrize(
    ("setting", "changes"),
    UNSAFE,
    ids=[f"{s}={'unset' if None in c.values() else 'unsafe'}" for s, c in UNSAFE],
)
def test_production_refuses_to_start_naming_the_setting(
    module: str, setting: str, changes: dict[str, str | None]
) -> None:
    done = _start(module, changes)
    assert done.returncode != 0, done.stderr
    assert done.stderr.count("refusing to start") == 1, done.stderr
    assert setting in done.stderr, done.stderr
    # The one unsafe setting, and nothing else.
    assert done.stderr.count("\n  - ") == 1, done.stderr


def test_the_message_names_every_unsafe_setting_at_once() -> None:
    # An operator CLI, too: it reads the same settings.
    done = _start(
        "engine.commands.merchants",
        {"ENGINE_WEBHOOK_SECRET": None, "DATABASE_URL": None, "ENGINE_ATOM_PASSWORD": None},
        "demo",
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("refusing to start") == 1, done.stderr
    for name in ("ENGINE_WEBHOOK_SECRET", "DATABASE_URL", "ENGINE_ATOM_PASSWORD"):
        assert name in done.stderr


def _settings(env: dict[str, str]) -> Settings:
    """Settings from `env` alone, as load() would build them."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_with_every_setting_proper_nothing_is_refused() -> None:
    assert config_settings.production_problems(_settings(_proper())) == []
    # The metrics port instead of a token is as good.
    env = _proper() | {"ENGINE_METRICS_PORT": "9464"}
    del env["ENGINE_METRICS_TOKEN"]
    assert config_settings.production_problems(_settings(env)) == []


def test_development_starts_with_the_public_defaults() -> None:
    defaults = _settings({})
    assert defaults.env == "development"
    # load() checks only in production: `make run` starts as it always did.
    assert len(config_settings.production_problems(defaults)) > 5


class _WithAllowList(Settings):
    """Settings with the egress policy's allow-list, whichever branch adds it."""

    webhook_allowed_hosts: str = ""


@pytest.mark.parametrize(
    "hosts",
    [
        "127.0.0.1:8082",
        "localhost:80",
        "[::1]:8080",
        "127.1:80",
        "2130706433:80",
        "0x7f.0.0.1:80",
        "api.localhost:443",
        "[::ffff:127.0.0.1]:80",
        "0.0.0.0:80",
        "hooks.example.com:443, 127.0.0.2:9000",
    ],
)
def test_loopback_in_the_webhook_allow_list_is_refused(hosts: str) -> None:
    fine = _WithAllowList.model_validate(
        {**_settings(_proper()).model_dump(), "webhook_allowed_hosts": "hooks.example.com:443"}
    )
    assert config_settings.production_problems(fine) == []
    unsafe = fine.model_copy(update={"webhook_allowed_hosts": hosts})
    found = config_settings.production_problems(unsafe)
    assert len(found) == 1 and "ENGINE_WEBHOOK_ALLOWED_HOSTS" in found[0], found
