"""engine.signing against a signature computed here by hand, as the spec describes it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from pydantic import ValidationError

from config.settings import DEV_WEBHOOK_SECRET, Settings
from engine.webhooks import signing
from simulator import signatures

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_KEY = b"another key, 24 bytes+..."
OTHER = "whsec_" + base64.b64encode(OTHER_KEY).decode()
MSG_ID = "evt_0000000000001_success"
TIMESTAMP = 1_700_000_000
BODY = '{"status":"SUCCESS","amount":10000,"echo":{"note":"한글"}}'.encode()


def expected(key: bytes) -> str:
    signed = f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_known_answer() -> None:
    assert signing.sign(SECRET, MSG_ID, TIMESTAMP, BODY) == expected(KEY)
    # A one-element list is the same as the secret alone.
    assert signing.sign([SECRET], MSG_ID, TIMESTAMP, BODY) == expected(KEY)


def test_known_answer_fixed_vector() -> None:
    # Pinned once, so a change in how the signed content is assembled cannot go unnoticed.
    assert signing.sign(SECRET, "msg_1", 1, b"{}") == (
        "v1," + base64.b64encode(hmac.new(KEY, b"msg_1.1.{}", hashlib.sha256).digest()).decode()
    )


def test_every_input_changes_the_signature() -> None:
    base = signing.sign(SECRET, MSG_ID, TIMESTAMP, BODY)
    assert signing.sign(OTHER, MSG_ID, TIMESTAMP, BODY) != base
    assert signing.sign(SECRET, MSG_ID + "x", TIMESTAMP, BODY) != base
    assert signing.sign(SECRET, MSG_ID, TIMESTAMP + 1, BODY) != base
    assert signing.sign(SECRET, MSG_ID, TIMESTAMP, BODY + b" ") != base


def test_several_secrets_give_several_signatures_in_order() -> None:
    header = signing.sign([OTHER, SECRET], MSG_ID, TIMESTAMP, BODY)
    assert header.split(" ") == [expected(OTHER_KEY), expected(KEY)]


def test_no_secret_or_a_bad_one_is_an_error() -> None:
    with pytest.raises(ValueError):
        signing.sign([], MSG_ID, TIMESTAMP, BODY)
    for bad in ("secret", "whsec_", "whsec_%%%", "whsec_aGVsbG8", "WHSEC_aGVsbG8="):
        with pytest.raises(ValueError):
            signing.sign(bad, MSG_ID, TIMESTAMP, BODY)


def test_new_secret_format_and_uniqueness() -> None:
    made = {signing.new_secret() for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret)
        assert 24 <= len(signing.secret_key(secret)) <= 64


def test_settings_validate_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_WEBHOOK_SECRET", raising=False)
    assert Settings().webhook_secret == DEV_WEBHOOK_SECRET
    assert Settings(webhook_secret=SECRET).webhook_secret == SECRET
    for bad in ("aGVsbG8=", "whsec_", "whsec_not base64"):
        with pytest.raises(ValidationError):
            Settings(webhook_secret=bad)


def test_engine_and_simulator_share_the_dev_secret() -> None:
    # `make run` works only if the engine's default is what the receiver accepts by default.
    assert DEV_WEBHOOK_SECRET == signatures.DEV_WEBHOOK_SECRET
    signing.secret_key(DEV_WEBHOOK_SECRET)


def test_simulator_verifies_what_the_engine_signs() -> None:
    header = signing.sign([OTHER, SECRET], MSG_ID, TIMESTAMP, BODY)
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": header,
    }
    check = {"now": TIMESTAMP + 10, "tolerance_seconds": 300}
    assert signatures.rejection(headers, BODY, [SECRET], **check) is None
    assert signatures.rejection(headers, BODY, [OTHER], **check) is None
    assert signatures.rejection(headers, BODY, [DEV_WEBHOOK_SECRET], **check) == (
        "signature_mismatch"
    )
    late = {"now": TIMESTAMP + 301, "tolerance_seconds": 300}
    assert signatures.rejection(headers, BODY, [SECRET], **late) == "timestamp_too_old"
