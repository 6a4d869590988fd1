"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256>` over "{id}.{timestamp}.{body}"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from config import formats

PREFIX = formats.WEBHOOK_SECRET_PREFIX
# The spec asks for 24 to 64 random bytes; we draw 32 and refuse fewer than 24.
SECRET_BYTES = 32
MIN_SECRET_BYTES = formats.MIN_WEBHOOK_SECRET_BYTES
# The HMAC key inside a `whsec_<base64>` secret: the settings check the same rule at load.
secret_key = formats.webhook_secret_key


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
