"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256>` over "{id}.{timestamp}.{body}"."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"
# The spec asks for 24 to 64 random bytes; we draw 32 and refuse fewer than 24.
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret; ValueError if it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"a webhook secret starts with {PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret must hold at least {MIN_SECRET_BYTES} random bytes")
    return key


def sign(secret_or_secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one `v1,<sig>` per secret, space-separated."""
    keys = [secret_or_secrets] if isinstance(secret_or_secrets, str) else secret_or_secrets
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    # The exact bytes sent are signed, so a receiver can check the body it read off the wire.
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(secret_key(s), signed, hashlib.sha256)).decode()
        for s in keys
    )


def new_secret() -> str:
    """A fresh random secret for an endpoint, in the `whsec_<base64>` form."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
