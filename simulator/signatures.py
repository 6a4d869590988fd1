"""Standard Webhooks verification as a merchant does it, written apart from the engine's signer.

The simulator never imports the engine: a shared bug in signing and checking would hide itself.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import AfterValidator

# DEV ONLY, public: what the engine signs with when ENGINE_WEBHOOK_SECRET is unset, so the
# receiver accepts `make run`'s webhooks out of the box. Same value as config/settings.py's.
DEV_WEBHOOK_SECRET = "whsec_aGFtc3Rlci1kZXYtb25seS13ZWJob29rLXNlY3JldCE="

_PREFIX = "whsec_"


def key_of(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError if it is not one."""
    if not secret.startswith(_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _checked(secret: str) -> str:
    key_of(secret)
    return secret


# A setting or request field holding a secret that key_of accepts.
WebhookSecret = Annotated[str, AfterValidator(_checked)]


def rejection(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_seconds: float,
) -> str | None:
    """Why this delivery must be refused, or None if one of `secrets` signed it in time."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not (msg_id and timestamp and signature):
        return "missing_signature_headers"
    if not timestamp.isascii() or not timestamp.isdigit():
        return "invalid_timestamp"
    # A captured delivery replayed later, or one stamped ahead, is refused even if signed.
    if now - int(timestamp) > tolerance_seconds:
        return "timestamp_too_old"
    if int(timestamp) - now > tolerance_seconds:
        return "timestamp_too_new"
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = [hmac.new(key_of(s), signed, hashlib.sha256).digest() for s in secrets]
    for entry in signature.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # other schemes (v1a, ...) are skipped, as the spec asks
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if any(hmac.compare_digest(given, e) for e in expected):
            return None
    return "signature_mismatch"
